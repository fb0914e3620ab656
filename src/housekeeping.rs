//! Background work that must not run on a request: the access-log writer and pruning of
//! idle rate-limit buckets and of expired stream-token state. One Pingora background service, stopped with the server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::state::Shared;
use crate::store::access_log::AccessLogWriter;

pub struct Housekeeping {
    shared: Arc<Shared>,
    writer: Mutex<Option<AccessLogWriter>>,
}

impl Housekeeping {
    pub fn new(shared: Arc<Shared>, writer: AccessLogWriter) -> Housekeeping {
        Housekeeping {
            shared,
            writer: Mutex::new(Some(writer)),
        }
    }
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let writer = self.writer.lock().take();
        // The writer runs until the process has drained (requests answered during a
        // graceful stop are logged too), then flushes and says so.
        let writer_task = async move {
            if let Some(w) = writer {
                w.run(crate::lifecycle::drained()).await;
            }
            crate::lifecycle::logs_flushed();
        };
        let shared = self.shared.clone();
        let prune_task = async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        shared.rate_limits.prune();
                        shared.ctx_store.prune();
                        // Use counts and revocations of expired stream tokens are dead weight.
                        let now = chrono::Utc::now().timestamp();
                        shared.access.uses.prune(now).await;
                        match shared.access.revocations.prune(now).await {
                            Ok(()) => {}
                            // Said once by the redis supervisor; retried next minute.
                            Err(e) if e.is_unavailable() => {
                                tracing::debug!(error = %e, "pruning revoked stream tokens deferred");
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "pruning revoked stream tokens failed");
                            }
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        };
        tokio::join!(writer_task, prune_task);
    }
}
