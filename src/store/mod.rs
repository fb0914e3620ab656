//! State: SQLite (the system of record) and in-memory snapshots the request path reads.

pub mod access_log;
pub mod api_keys;
pub mod content_keys;
pub mod cookie_jar;
pub mod ctx;
pub mod revocations;
pub mod sqlite;
pub mod stream_ids;
pub mod use_counts;

pub use sqlite::{Db, StoreError};
pub use stream_ids::StreamRegistry;
