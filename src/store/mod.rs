//! State: SQLite (the system of record) and in-memory snapshots the request path reads.

pub mod sqlite;
pub mod stream_ids;

pub use sqlite::{Db, StoreError};
pub use stream_ids::StreamRegistry;
