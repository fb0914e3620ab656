//! sluice: a token-gated HLS/DASH streaming edge proxy on Pingora.
//!
//! The request's path through the crate: [`edge`] (Pingora proxy phases) → [`api`] (in-process
//! router for non-media routes) → [`store`] (SQLite and in-memory snapshots). [`admin`] serves
//! operators, [`origin_dir`] serves the bundled demo, [`config`] is the YAML model.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod config;
pub mod edge;
pub mod media;
pub mod metrics;
pub mod origin_dir;
pub mod rewrite;
pub mod server;
pub mod store;
