//! `access_logs`: every admin-API request made with a valid key, and every refusal (401, 403,
//! 429), written in batches off the request path.
//!
//! Handlers `record` into a bounded queue (never waiting); one task drains it every second or
//! every 256 entries in a single transaction, and applies the retention period: rows older
//! than `admin.access_log_retention` are deleted at the first write after start and every
//! 10 minutes after. `last_used` of API keys is updated by the same task.
//!
//! A flood of refusals must not fill the disk or stall the writer: per client IP and minute
//! the first [`ROWS_PER_IP_MINUTE`] refusals are rows of their own, and at most
//! [`ROWS_PER_MINUTE`] refusal rows are written per minute overall; beyond that they are
//! counted, and written as one row per (IP, status) and minute with `endpoint = '*'`,
//! `method = '*'` and the number of requests in `count` (a column sluice adds to the
//! document's table; 1 for ordinary rows). Authenticated requests are always rows.
//!
//! Nothing queued is lost on a graceful shutdown: the writer flushes its batch, the queue and
//! the pending aggregates when told to stop — and, should the runtime be torn down first, when
//! it is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
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
    /// The request's `X-Request-Id` (none on aggregated refusal rows).
    pub request_id: Option<String>,
}

/// A row as written: an entry, or an aggregate of `count` refusals.
#[derive(Debug, Clone)]
struct Row {
    entry: AccessEntry,
    count: u64,
}

const QUEUE: usize = 10_000;
const BATCH: usize = 256;
/// Refusals per client IP per minute written as rows of their own.
pub const ROWS_PER_IP_MINUTE: u32 = 20;
/// Refusal rows per minute overall before everything is aggregated.
pub const ROWS_PER_MINUTE: u32 = 1_000;
/// Distinct (IP, status) aggregates per minute; beyond it, one aggregate per status.
const MAX_AGGREGATES: usize = 10_000;

/// Per-minute refusal accounting.
#[derive(Default)]
struct Refusals {
    minute: i64,
    rows_by_ip: HashMap<String, u32>,
    rows: u32,
    /// (ip, status) → refusals not written as rows this minute.
    pending: HashMap<(String, u16), u64>,
    /// Aggregates of past minutes, waiting for the writer.
    ready: Vec<Row>,
}

impl Refusals {
    /// Whether this refusal gets a row of its own; otherwise it is counted.
    fn admit(&mut self, e: &AccessEntry, minute: i64) -> bool {
        if minute != self.minute {
            self.close_minute();
            self.minute = minute;
        }
        let per_ip = self.rows_by_ip.get(&e.ip).copied().unwrap_or(0);
        if per_ip < ROWS_PER_IP_MINUTE
            && self.rows < ROWS_PER_MINUTE
            && (self.rows_by_ip.len() < MAX_AGGREGATES || per_ip > 0)
        {
            *self.rows_by_ip.entry(e.ip.clone()).or_default() += 1;
            self.rows += 1;
            return true;
        }
        let key = if self.pending.len() < MAX_AGGREGATES
            || self.pending.contains_key(&(e.ip.clone(), e.status))
        {
            (e.ip.clone(), e.status)
        } else {
            ("*".to_string(), e.status)
        };
        *self.pending.entry(key).or_default() += 1;
        false
    }

    fn close_minute(&mut self) {
        self.rows_by_ip.clear();
        self.rows = 0;
        for ((ip, status), count) in self.pending.drain() {
            self.ready.push(Row {
                entry: AccessEntry {
                    api_key_id: None,
                    endpoint: "*".into(),
                    method: "*".into(),
                    ip,
                    status,
                    request_id: None,
                },
                count,
            });
        }
    }

    /// Aggregates ready to write (`all`: the current minute's too, at shutdown).
    fn take(&mut self, now_minute: i64, all: bool) -> Vec<Row> {
        if all || now_minute != self.minute {
            self.close_minute();
        }
        std::mem::take(&mut self.ready)
    }
}

fn minute_now() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(60)
}

#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Row>,
    refusals: Arc<Mutex<Refusals>>,
}

impl AccessLog {
    /// The queue and its writer; run the writer with [`AccessLogWriter::run`].
    pub fn new(db: Db, retention: Duration) -> (AccessLog, AccessLogWriter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let refusals = Arc::new(Mutex::new(Refusals::default()));
        (
            AccessLog {
                tx,
                refusals: refusals.clone(),
            },
            AccessLogWriter {
                db,
                rx,
                retention,
                refusals,
                batch: Vec::with_capacity(BATCH),
                shared_keys: None,
            },
        )
    }

    pub fn record(&self, e: AccessEntry) {
        if e.api_key_id.is_none() && !self.refusals.lock().admit(&e, minute_now()) {
            return;
        }
        if self.tx.try_send(Row { entry: e, count: 1 }).is_err() {
            crate::metrics::ACCESS_LOG_DROPPED.inc();
        }
    }
}

/// The receiving half, run by the housekeeping background service.
pub struct AccessLogWriter {
    db: Db,
    rx: mpsc::Receiver<Row>,
    retention: Duration,
    refusals: Arc<Mutex<Refusals>>,
    /// Received, not yet written (kept here so a drop can still write it).
    batch: Vec<Row>,
    /// On a fleet, API keys live in Redis: their `last_used` is written there, not here.
    shared_keys: Option<std::sync::Arc<dyn super::api_keys::ApiKeyStore>>,
}

impl AccessLogWriter {
    /// Record key use in the fleet's key store instead of the local table.
    pub fn with_shared_keys(
        mut self,
        keys: std::sync::Arc<dyn super::api_keys::ApiKeyStore>,
    ) -> AccessLogWriter {
        self.shared_keys = Some(keys);
        self
    }

    /// Write batches until every sender is gone or `stop` resolves, then write what is left.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                e = self.rx.recv() => match e {
                    Some(e) => {
                        self.batch.push(e);
                        if self.batch.len() < BATCH {
                            continue;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {}
                _ = &mut stop => break,
            }
            // Outside the select: a stop never cancels a write half done.
            let mut rows = std::mem::take(&mut self.batch);
            rows.extend(self.refusals.lock().take(minute_now(), false));
            flush(&self.db, self.shared_keys.as_deref(), rows).await;
            if last_prune.elapsed() > Duration::from_secs(600) {
                last_prune = std::time::Instant::now();
                let cutoff = format!("-{} seconds", self.retention.as_secs());
                let pruned = self
                    .db
                    .call(move |c| {
                        c.execute(
                            "DELETE FROM access_logs WHERE timestamp < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)",
                            [cutoff],
                        )
                    })
                    .await;
                if let Err(e) = pruned {
                    tracing::warn!(error = %e, "access_logs: rows past admin.access_log_retention not pruned");
                }
            }
        }
        let rows = self.remaining();
        flush(&self.db, self.shared_keys.as_deref(), rows).await;
    }

    /// Everything not yet written: the batch, the queue, every pending aggregate.
    fn remaining(&mut self) -> Vec<Row> {
        let mut rows = std::mem::take(&mut self.batch);
        while let Ok(e) = self.rx.try_recv() {
            rows.push(e);
        }
        rows.extend(self.refusals.lock().take(minute_now(), true));
        rows
    }
}

impl Drop for AccessLogWriter {
    /// The runtime can be torn down before `run` sees the stop (a zero grace period): write
    /// what is left synchronously, on the store thread.
    fn drop(&mut self) {
        let rows = self.remaining();
        if rows.is_empty() {
            return;
        }
        let touch_locally = self.shared_keys.is_none();
        if let Err(e) = self
            .db
            .call_blocking(move |c| write_rows(c, &rows, touch_locally))
        {
            tracing::warn!(error = %e, "access log rows not written at shutdown");
        }
    }
}

async fn flush(db: &Db, shared_keys: Option<&dyn super::api_keys::ApiKeyStore>, rows: Vec<Row>) {
    if rows.is_empty() {
        return;
    }
    let touch_locally = shared_keys.is_none();
    match db.call(move |c| write_rows(c, &rows, touch_locally)).await {
        Ok(keys) => {
            if let Some(store) = shared_keys {
                if let Err(e) = store.touch(&keys).await {
                    tracing::debug!(error = %e, "api key last use not recorded");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "access log batch not written"),
    }
}

/// Write the rows; the ids of the keys they name are returned (and their `last_used` set
/// here when `touch_locally`).
fn write_rows(
    c: &mut rusqlite::Connection,
    rows: &[Row],
    touch_locally: bool,
) -> Result<Vec<i64>, rusqlite::Error> {
    let tx = c.transaction()?;
    let mut keys = Vec::new();
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO access_logs (api_key_id, endpoint, method, ip_address, response_code, count, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for r in rows {
            let e = &r.entry;
            st.execute(rusqlite::params![
                e.api_key_id,
                e.endpoint,
                e.method,
                e.ip,
                e.status,
                r.count as i64,
                e.request_id
            ])?;
            if let Some(id) = e.api_key_id {
                if !keys.contains(&id) {
                    keys.push(id);
                }
            }
        }
    }
    tx.commit()?;
    if touch_locally {
        super::api_keys::touch(c, &keys)?;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(ip: &str, status: u16) -> AccessEntry {
        AccessEntry {
            api_key_id: None,
            endpoint: "/api/stream-ids".into(),
            method: "GET".into(),
            ip: ip.into(),
            status,
            request_id: Some("req-1".into()),
        }
    }

    #[test]
    fn floods_are_aggregated_per_ip_and_minute() {
        let mut r = Refusals::default();
        let rows = (0..500)
            .filter(|_| r.admit(&refusal("1.2.3.4", 401), 7))
            .count();
        assert_eq!(rows as u32, ROWS_PER_IP_MINUTE);
        // Another IP still gets its own rows.
        assert!(r.admit(&refusal("5.6.7.8", 401), 7));
        let agg = r.take(8, false);
        assert_eq!(agg.len(), 1);
        assert_eq!(agg[0].count, 500 - u64::from(ROWS_PER_IP_MINUTE));
        assert_eq!(
            (agg[0].entry.ip.as_str(), agg[0].entry.endpoint.as_str()),
            ("1.2.3.4", "*")
        );
        // A new minute starts with fresh row budgets.
        assert!(r.admit(&refusal("1.2.3.4", 401), 8));
    }

    #[test]
    fn the_global_row_budget_holds_across_ips() {
        let mut r = Refusals::default();
        let mut rows = 0u32;
        for i in 0..5_000u32 {
            if r.admit(&refusal(&format!("10.0.{}.{}", i / 256, i % 256), 429), 1) {
                rows += 1;
            }
        }
        assert_eq!(rows, ROWS_PER_MINUTE);
        let counted: u64 = r.take(1, true).iter().map(|a| a.count).sum();
        assert_eq!(u64::from(rows) + counted, 5_000);
    }
}
