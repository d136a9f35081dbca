//! Recording events as webhooks: builds the bodies (`recording.started`, `.success`, `.failed`)
//! and runs delivery from the durable outbox in the background while the recording runs.
//! Bodies carry ids, keys, sizes and checksums; names only as SHA-256.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::privacy::sha256_hex;
use crate::session::Session;
use crate::webhook::{self, DeliveryReport, Outbox, WebhookConfig};

/// Webhook settings of one run.
#[derive(Debug, Clone)]
pub struct Webhooks {
    pub url: String,
    pub config: WebhookConfig,
    pub outbox: Outbox,
    /// How long the run waits at the end for its events to be delivered.
    pub wait: Duration,
}

/// Classification of a failure for `recording.failed`.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error_type: &'static str,
    /// `customer` when the customer can fix it (credentials, permissions, bucket, input),
    /// `internal` otherwise.
    pub fault: &'static str,
    pub message: String,
}

pub struct Notifier {
    hooks: Option<Webhooks>,
    recording: String,
    queued: std::cell::Cell<usize>,
    background: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub fn session_fields(s: &Session) -> Value {
    json!({
        "session_id": s.session_id,
        "room_id": s.room_id,
        "room_name_sha256": sha256_hex(s.room_name.expose().as_bytes()),
        "participants": s.peers.iter().map(|p| json!({
            "peer_id": p.peer_id,
            "user_id": p.user_id,
            "name_sha256": sha256_hex(p.name.expose().as_bytes()),
            "joined_ms": p.joined_ms,
            "left_ms": p.left_ms,
        })).collect::<Vec<_>>(),
    })
}

impl Notifier {
    /// Starts background delivery (which also delivers what earlier runs left pending).
    pub fn start(hooks: Option<Webhooks>, recording: &str) -> Self {
        let background = hooks.as_ref().map(|h| {
            let stop = Arc::new(AtomicBool::new(false));
            let (outbox, config, flag) = (h.outbox.clone(), h.config.clone(), stop.clone());
            let handle = std::thread::spawn(move || loop {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let deadline = Instant::now() + Duration::from_secs(3600);
                if let Err(e) = webhook::deliver(&outbox, &config, None, deadline, &flag) {
                    tracing::error!(error = %e, "webhook delivery");
                }
                std::thread::sleep(Duration::from_millis(100));
            });
            (stop, handle)
        });
        Self { hooks, recording: recording.to_owned(), queued: std::cell::Cell::new(0), background }
    }

    fn enqueue(&self, event: &str, body: Map<String, Value>) {
        if let Some(h) = &self.hooks {
            let mut body = body;
            body.insert("recording_id".into(), self.recording.clone().into());
            match h.outbox.enqueue(&self.recording, &h.url, event, body) {
                Ok(id) => {
                    self.queued.set(self.queued.get() + 1);
                    tracing::info!(event, id = %id, "webhook queued")
                }
                Err(e) => tracing::error!(event, error = %e, "webhook could not be queued"),
            }
        }
    }

    pub fn started(&self, s: &Session) {
        let mut body = obj(session_fields(s));
        body.insert("started_at".into(), s.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into());
        self.enqueue("recording.started", body);
    }

    pub fn success(&self, s: &Session, result: &crate::recording::RecordingResult, destination: &crate::upload::Destination) {
        let mut body = obj(session_fields(s));
        let stopped = s.started_at + chrono::Duration::milliseconds(result.duration_ms as i64);
        let object = |kind: &str| {
            result.objects.iter().find(|o| o.kind == kind).map(|o| {
                json!({"key": o.object.key, "size": o.object.size, "sha256": o.object.sha256, "content_type": o.object.content_type})
            })
        };
        body.append(&mut obj(json!({
            "destination": destination.describe(),
            "bucket": destination.bucket(),
            "composite": object("composite"),
            "chat": object("chat"),
            "duration_ms": result.duration_ms,
            "width": result.width,
            "height": result.height,
            "started_at": result.started_at,
            "stopped_at": stopped.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "warnings": result.warnings,
        })));
        self.enqueue("recording.success", body);
    }

    pub fn failed(&self, s: Option<&Session>, f: &Failure) {
        let mut body = s.map(|s| obj(session_fields(s))).unwrap_or_default();
        body.append(&mut obj(json!({"error": {"type": f.error_type, "fault": f.fault, "message": f.message}})));
        self.enqueue("recording.failed", body);
    }

    /// Stops background delivery, then delivers this run's remaining events, waiting up to the
    /// configured time. What is not delivered stays in the outbox for the next run.
    pub fn finish(mut self) -> Option<DeliveryReport> {
        let h = self.hooks.take()?;
        if let Some((stop, handle)) = self.background.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
        let never = AtomicBool::new(false);
        if let Err(e) = webhook::deliver(&h.outbox, &h.config, Some(&self.recording), Instant::now() + h.wait, &never) {
            tracing::error!(error = %e, "webhook delivery");
        }
        // Counted over this recording's events, whichever thread delivered them.
        let pending = h.outbox.pending(Some(&self.recording));
        let failed = h.outbox.dead(&self.recording);
        let delivered = self.queued.get().saturating_sub(pending + failed);
        Some(DeliveryReport { delivered, failed, pending })
    }
}
