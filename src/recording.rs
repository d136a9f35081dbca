//! One recording, start to finish:
//! session source → compositor → encrypted spill → uploader → (webhook, later).
//!
//! [`reprocess`] reads as the whole flow; everything it calls is a part in its own module.
//! Invariants kept here: the only bytes written locally are spill files (ciphertext); a spill
//! is removed only after its object is confirmed at the destination.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::compose::{self, chat, layout::LayoutMode, profile::Profile, Compositor};
use crate::notify::{Failure, Notifier, Webhooks};
use crate::session::{self, Session};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::spill::{self, SpillKey};
use crate::upload::stream::{ObjectStream, RetryPolicy, StreamError};
use crate::upload::{object_key, Destination, DestinationFault, StoredObject};
use crate::webhook::{random_id, DeliveryReport};

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error(transparent)]
    Session(#[from] session::files::LoadError),
    #[error(transparent)]
    Profile(#[from] compose::profile::ProfileError),
    #[error(transparent)]
    Compose(#[from] compose::ComposeError),
    #[error("{cause} (the part recorded before the failure was delivered as {key})")]
    Partial { cause: compose::ComposeError, key: String },
    #[error("spill folder {path}: {message}")]
    SpillDir { path: PathBuf, message: String },
    #[error(transparent)]
    Spill(#[from] spill::SpillError),
    #[error("upload of {key} failed: {cause}")]
    Upload { key: String, cause: StreamError },
    #[error("cancelled: nothing was delivered; the partial upload was aborted and the spill shredded")]
    Cancelled,
    #[error("live session: {0}")]
    Live(String),
}

impl From<crate::session::janus::JanusError> for RecordingError {
    fn from(e: crate::session::janus::JanusError) -> Self {
        RecordingError::Live(e.to_string())
    }
}

const SEAL_BYTES: usize = 256 * 1024;
const SEAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ReprocessOptions {
    pub destination: Destination,
    pub layout: LayoutMode,
    pub profile: String,
    pub spill_dir: PathBuf,
    pub chat: bool,
    pub include_direct: bool,
    pub webhooks: Option<Webhooks>,
    pub retry: RetryPolicy,
    /// Set (by a signal handler) to cancel the recording.
    pub cancel: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputObject {
    pub kind: &'static str,
    #[serde(flatten)]
    pub object: StoredObject,
}

/// The result printed as JSON by the CLI. Free of names and chat text.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingResult {
    pub status: &'static str,
    pub recording_id: String,
    pub session_id: String,
    pub room_id: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub width: i32,
    pub height: i32,
    pub fps: i32,
    pub profile: String,
    pub objects: Vec<OutputObject>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<DeliveryReport>,
}

/// Re-composites a session folder into the destination, with webhooks for start, success
/// and failure.
pub fn reprocess(dir: &Path, opts: &ReprocessOptions, progress: impl FnMut(u64, u64)) -> Result<RecordingResult, RecordingError> {
    let recording_id = random_id("rec");
    let notifier = Notifier::start(opts.webhooks.clone(), &recording_id);
    let mut loaded: Option<Session> = None;
    let outcome = (|| {
        compose::init()?;
        let profile = Profile::load(&opts.profile)?;
        let session = loaded.insert(session::files::load(dir)?);
        notifier.started(session);
        record(session, &profile, opts, &recording_id, progress)
    })();
    match (&outcome, &loaded) {
        (Ok(result), Some(session)) => notifier.success(session, result, &opts.destination),
        (Err(e), s) => notifier.failed(s.as_ref(), &classify(e)),
        (Ok(_), None) => {}
    }
    let report = notifier.finish();
    outcome.map(|mut r| {
        r.webhooks = report;
        r
    })
}

/// Tells the customer's faults from internal ones, for `recording.failed`.
pub fn classify(e: &RecordingError) -> Failure {
    let (error_type, fault) = match e {
        RecordingError::Session(_) => ("input_invalid", "customer"),
        RecordingError::Profile(_) => ("configuration_invalid", "customer"),
        RecordingError::Upload { cause, .. } => match cause.upload_error().and_then(|u| u.fault()) {
            Some(DestinationFault::Permission) => ("destination_permission_denied", "customer"),
            Some(DestinationFault::Missing) => ("destination_missing", "customer"),
            Some(DestinationFault::Credentials) => ("destination_credentials_invalid", "customer"),
            Some(DestinationFault::Unreachable) => ("destination_unreachable", "internal"),
            Some(DestinationFault::Rejected) => ("destination_rejected", "internal"),
            None => ("upload_failed", "internal"),
        },
        RecordingError::Compose(_) | RecordingError::Partial { .. } => ("composition_failed", "internal"),
        RecordingError::SpillDir { .. } | RecordingError::Spill(_) => ("local_storage_failed", "internal"),
        RecordingError::Cancelled => ("cancelled", "internal"),
        RecordingError::Live(_) => ("live_session_failed", "internal"),
    };
    Failure { error_type, fault, message: e.to_string() }
}

/// Composites `session` into the destination: every byte goes through the encrypted spill
/// and streams to the destination while the recording runs; confirmed parts are wiped.
pub fn record(
    session: &Session,
    profile: &Profile,
    opts: &ReprocessOptions,
    recording_id: &str,
    progress: impl FnMut(u64, u64),
) -> Result<RecordingResult, RecordingError> {
    prepare_spill_dir(&opts.spill_dir)?;
    let dest = &opts.destination;
    let key = SpillKey::generate()?;
    let mut objects = Vec::new();
    let stream = |object_key: &str, content_type: &str| {
        let (d, k, ct) = (dest.clone(), object_key.to_owned(), content_type.to_owned());
        ObjectStream::start(Box::new(move || d.begin(&k, &ct)), (dest.first_part_size(), dest.part_size()), &opts.spill_dir, &key, opts.retry, opts.cancel.clone())
    };
    let video_key = object_key(dest.prefix(), "composite", &session.room_id, session.started_at, &profile.extension);
    let upload_err = |key: &str| {
        let key = key.to_owned();
        move |source: StreamError| match source {
            StreamError::Cancelled => RecordingError::Cancelled,
            cause => RecordingError::Upload { key, cause },
        }
    };

    // The video streams from its first muxed bytes. The sink seals a spill chunk at least
    // every second or 256 KiB, so ciphertext reaches the disk while recording and a crash
    // loses little; whole parts go to the uploader as they fill.
    let out: Arc<Mutex<Option<ObjectStream>>> = Arc::default();
    let sink_out = out.clone();
    let start_video = {
        let video_key = video_key.clone();
        let content_type = profile.content_type.clone();
        let stream = &stream;
        move || stream(&video_key, &content_type)
    };
    let compose_opts = compose::Options {
        layout: opts.layout,
        profile: profile.clone(),
        chat_panel: opts.chat,
        include_direct: opts.include_direct,
    };
    let mut last_seal = std::time::Instant::now();
    let sink = move |bytes: &[u8]| -> Result<(), String> {
        let mut guard = sink_out.lock().map_err(|_| "output lock poisoned".to_string())?;
        let s = guard.as_mut().ok_or("the upload was not started")?;
        s.write(bytes).map_err(|e| e.to_string())?;
        if s.buffered() >= SEAL_BYTES || last_seal.elapsed() >= SEAL_INTERVAL {
            s.flush().map_err(|e| e.to_string())?;
            last_seal = std::time::Instant::now();
        }
        Ok(())
    };
    let composed = Compositor::build(session, &compose_opts, Box::new(sink)).map(|compositor| {
        // The upload begins as the pipeline starts producing bytes.
        *out.lock().unwrap() = Some(start_video());
        compositor.run(&opts.cancel, progress)
    });
    let video = out.lock().ok().and_then(|mut o| o.take());
    let composed = match composed {
        Ok(c) => c,
        Err(e) => {
            if let Some(v) = video {
                v.abort();
            }
            return Err(e.into());
        }
    };
    let Some(video) = video else {
        return Err(RecordingError::Upload { key: video_key, cause: StreamError::Stopped });
    };
    if matches!(composed, Err(compose::ComposeError::Cancelled)) {
        video.abort();
        return Err(RecordingError::Cancelled);
    }
    // An upload failure also stops the pipeline (the sink refuses bytes): report the upload's
    // error, which says what to fix, rather than the pipeline's.
    if video.stopped() {
        return Err(video.finish().map_err(upload_err(&video_key)).err().unwrap_or(RecordingError::Cancelled));
    }
    // Even a failed composite leaves a playable fragmented MP4: deliver what exists.
    let video_obj = video.finish().map_err(upload_err(&video_key))?;
    objects.push(OutputObject { kind: "composite", object: video_obj });
    let report = composed.map_err(|cause| RecordingError::Partial { cause, key: video_key.clone() })?;

    // The chat CSV is known once the session is; it takes the same path as the video.
    if let (Some(messages), true) = (&session.chat, opts.chat) {
        let chat_key = object_key(dest.prefix(), "chat", &session.room_id, session.started_at, "csv");
        let csv = zeroize::Zeroizing::new(chat::csv(&chat::recorded(messages, opts.include_direct), session.started_at));
        let mut s = stream(&chat_key, "text/csv; charset=utf-8");
        s.write(csv.as_bytes()).map_err(upload_err(&chat_key))?;
        let o = s.finish().map_err(upload_err(&chat_key))?;
        objects.push(OutputObject { kind: "chat", object: o });
    }
    drop(key); // zeroized

    Ok(RecordingResult {
        status: "success",
        recording_id: recording_id.to_owned(),
        session_id: session.session_id.clone(),
        room_id: session.room_id.clone(),
        started_at: rfc3339(session.started_at),
        duration_ms: report.duration_ms,
        width: report.width,
        height: report.height,
        fps: report.fps,
        profile: profile.name.clone(),
        objects,
        warnings: report.warnings,
        webhooks: None,
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The default spill folder: `$VEIL_SPILL_DIR`, else a private folder under the temp dir.
pub fn default_spill_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VEIL_SPILL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("veil-spill-{uid}"))
}

/// Creates the spill folder (0700) or checks that an existing one is ours and private, then
/// removes spills left by crashed runs.
pub(crate) fn prepare_spill_dir(dir: &Path) -> Result<(), RecordingError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let err = |message: String| RecordingError::SpillDir { path: dir.to_owned(), message };
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| err(e.to_string()))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err("not a folder".into()));
    }
    // SAFETY: getuid has no preconditions.
    if meta.uid() != unsafe { libc::getuid() } {
        return Err(err("owned by another user".into()));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| err(format!("cannot make it private: {e}")))?;
    }
    let stale = spill::remove_stale(dir);
    if stale > 0 {
        tracing::info!(count = stale, "removed spill files left by an interrupted run (unreadable without their key)");
    }
    Ok(())
}
