//! Token and credential schemes: pure sign/verify functions, no I/O.
//!
//! Each scheme lives in its own module so the handler that uses it (under `src/api/` or the
//! edge's `request_filter`) calls one function and maps one typed error to its surface's
//! status codes. Nothing here reads a clock, the environment or a database: callers pass
//! `now` and the secret, which is what makes every rule unit-testable.
//!
//! | scheme | document | module |
//! |---|---|---|
//! | `Bearer b64url(json).b64url(hmac)` on `GET /api/key/{hash}` | `playback-api.txt` | [`key_token`] |
//! | `X-Signature-Token` = hex HMAC-SHA256 over `"{ts}:{path}"` | `signed-channel-api.txt` | [`request_sig`] |
//! | stream token (JWT HS256, `contentId`/`maxUses`/… claims) | `stream-token-api.txt` | [`stream_token`] |
//! | provider `Authorization: Bearer <jwt>` | `provider-proxy-api.txt` | [`jwt`] |
//! | operator `Authorization: Bearer <API key>`, permissions | `admin-api.md` | [`api_keys`] |
//! | playback credential `pc=` on what an entry playlist links to | `stream-token-api.txt` (sluice's gate) | [`playback`] |
//!
//! Secrets at rest (content keys, provider credentials) are sealed by [`crate::crypto`], not
//! here. Common rules across the modules (DESIGN.md "Tokens"): MACs are compared in constant
//! time, secrets never appear in `Debug` output or error messages, every verifier bounds the
//! input length before decoding, and an empty secret fails closed (nothing verifies) rather
//! than accepting MACs anyone can compute.

pub mod api_keys;
pub mod jwt;
pub mod key_token;
pub mod playback;
pub mod request_sig;
pub mod stream_token;
