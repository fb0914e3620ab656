//! Caching for the edge: the storage pingora-cache reads and fills.
//!
//! Where it sits in a request's path: the edge's cache phases (pingora-cache, with the cache
//! lock and an eviction manager) call [`MemoryStorage`] to look objects up, to stream a miss
//! into it while players already read the arriving bytes, and to purge what the eviction
//! manager evicts. Behind it, optionally, [`disk::DiskTier`] keeps objects across restarts.
//! Operators purge through [`MemoryStorage::purge_prefix`] and
//! [`MemoryStorage::purge_exact_primary`]. What it knows of objects it does not hold (their
//! lengths, which segments are still growing) decides how a miss is fetched ([`known`]).

pub mod disk;
pub mod eviction;
pub mod known;
pub mod policy;
pub mod runtime;
pub mod storage;

pub use storage::{MemoryStorage, StorageError, StorageStats};

#[cfg(test)]
mod tests;
