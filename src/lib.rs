//! sluice: a token-gated HLS/DASH streaming edge proxy on Pingora.
//!
//! The request's path through the crate: [`edge`] (Pingora proxy phases) → [`api`] (in-process
//! router for non-media routes) → [`store`] (SQLite and in-memory snapshots). [`admin`] serves
//! operators, [`origin_dir`] serves the bundled demo, [`config`] is the YAML model. [`auth`]
//! holds the token and API-key schemes (pure sign/verify), [`crypto`] seals secrets at rest.
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
