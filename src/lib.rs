//! sluice: a token-gated HLS/DASH streaming edge proxy on Pingora.
//!
//! The request's path through the crate: [`edge`] (Pingora proxy phases) → [`api`] (in-process
//! router for non-media routes) → [`store`] (SQLite and in-memory snapshots). [`admin`] serves
//! operators, [`origin_dir`] serves the bundled demo, [`config`] is the YAML model. [`auth`]
//! holds the token and API-key schemes (pure sign/verify), [`crypto`] seals secrets at rest.
//!
//! # Layers
//!
//! The top-level modules stand in layers: a module names (through `crate::`) only modules of
//! its own row or of a row below, and modules of one row never name each other in a circle.
//! Lower layers never reach up: a label set belongs to the module that owns its values (which
//! creates its series at start), `Config` holds data only, and what a store needs is defined in
//! the store. `tests/layers.rs` reads every `crate::` path outside `#[cfg(test)]` and fails on
//! a module that names one above it; README's "Layout" carries the same table.
//!
//! | layer | modules | what they are |
//! |---|---|---|
//! | 9 entry points | `server`, `cli` | the Pingora `Server` wiring of `serve`; the token and key commands |
//! | 8 listeners | `edge`, `admin`, `housekeeping` | the proxy phases, the admin service, background work off the request path |
//! | 7 routes | `api` | the router of both listeners, one module per surface |
//! | 6 process state | `state` | `AppState`: what every request reads |
//! | 5 services | `access`, `cache`, `conn`, `daemon`, `fleet`, `instance`, `lifecycle`, `origin_dir`, `provider`, `ratelimit`, `ssrf`, `stats`, `upstream` | the runtime behaviour each concern owns, and its metric label sets |
//! | 4 stores | `store` | SQLite, memory and Redis behind the store traits |
//! | 3 observability | `metrics`, `logging` | metric families and handles; the log subscriber |
//! | 2 configuration | `config` | the YAML model and its validated, data-only `Config` |
//! | 1 foundations | `auth`, `client`, `crypto`, `http_client`, `media`, `redact`, `request_id`, `rewrite`, `tls` | pure rules and leaf utilities: tokens, client address, sealing, media names, rewriters |
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod access;
pub mod admin;
pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod crypto;
pub mod daemon;
pub mod edge;
pub mod fleet;
pub mod housekeeping;
pub mod http_client;
pub mod instance;
pub mod lifecycle;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod origin_dir;
pub mod provider;
pub mod ratelimit;
pub mod redact;
pub mod request_id;
pub mod rewrite;
pub mod server;
pub mod ssrf;
pub mod state;
pub mod stats;
pub mod store;
pub mod tls;
pub mod upstream;
