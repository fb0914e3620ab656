//! `access_logs`: every authenticated admin request, written in batches off the request path.
//!
//! Handlers `record` into a bounded queue (never waiting); one task drains it every second or
//! every 256 entries in a single transaction, and applies the retention period. When the queue
//! is full, entries are dropped and counted rather than slowing the API down. `last_used` of
//! API keys is updated by the same task.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Db;

/// One admin request.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    pub api_key_id: Option<i64>,
    pub endpoint: String,
    pub method: String,
    pub ip: String,
    pub status: u16,
}

#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<AccessEntry>,
}

const QUEUE: usize = 10_000;
const BATCH: usize = 256;

/// The receiving half, run by the housekeeping background service.
pub struct AccessLogWriter {
    db: Db,
    rx: mpsc::Receiver<AccessEntry>,
    retention: Duration,
}

impl AccessLogWriter {
    /// Drain until every sender is gone or `stop` resolves, flushing what is queued.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::select! {
            _ = writer(&self.db, &mut self.rx, self.retention) => {}
            _ = stop => {
                let mut rest = Vec::new();
                while let Ok(e) = self.rx.try_recv() {
                    rest.push(e);
                }
                flush(&self.db, &mut rest).await;
            }
        }
    }
}

impl AccessLog {
    /// The queue and its writer; run the writer with [`AccessLogWriter::run`].
    pub fn new(db: Db, retention: Duration) -> (AccessLog, AccessLogWriter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (AccessLog { tx }, AccessLogWriter { db, rx, retention })
    }

    pub fn record(&self, e: AccessEntry) {
        if self.tx.try_send(e).is_err() {
            crate::metrics::ACCESS_LOG_DROPPED.inc();
        }
    }
}

async fn writer(db: &Db, rx: &mut mpsc::Receiver<AccessEntry>, retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            e = rx.recv() => match e {
                Some(e) => {
                    batch.push(e);
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                None => {
                    flush(db, &mut batch).await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        flush(db, &mut batch).await;
        if last_prune.elapsed() > Duration::from_secs(600) {
            last_prune = std::time::Instant::now();
            let cutoff = format!("-{} seconds", retention.as_secs());
            let _ = db
                .call(move |c| {
                    c.execute(
                        "DELETE FROM access_logs WHERE timestamp < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)",
                        [cutoff],
                    )
                })
                .await;
        }
    }
}

async fn flush(db: &Db, batch: &mut Vec<AccessEntry>) {
    if batch.is_empty() {
        return;
    }
    let entries = std::mem::take(batch);
    let result = db
        .call(move |c| {
            let tx = c.transaction()?;
            let mut keys = Vec::new();
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO access_logs (api_key_id, endpoint, method, ip_address, response_code) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in &entries {
                    st.execute(rusqlite::params![e.api_key_id, e.endpoint, e.method, e.ip, e.status])?;
                    if let Some(id) = e.api_key_id {
                        if !keys.contains(&id) {
                            keys.push(id);
                        }
                    }
                }
            }
            tx.commit()?;
            super::api_keys::touch(c, &keys)
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "access log batch not written");
    }
}
