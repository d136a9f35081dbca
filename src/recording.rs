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
use crate::privacy::hex;
use crate::session::{self, Session};
use crate::spill::{self, SpillKey, SpillWriter};
use crate::upload::{object_key, Destination, DestinationFault, PutFailure, StoredObject, UploadError};
use crate::webhook::{random_id, DeliveryReport};

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error(transparent)]
    Session(#[from] session::files::LoadError),
    #[error(transparent)]
    Profile(#[from] compose::profile::ProfileError),
    #[error(transparent)]
    Compose(#[from] compose::ComposeError),
    #[error("{source} (the part recorded before the failure was delivered as {key})")]
    Partial { source: compose::ComposeError, key: String },
    #[error("spill folder {path}: {message}")]
    SpillDir { path: PathBuf, message: String },
    #[error(transparent)]
    Spill(#[from] spill::SpillError),
    #[error("upload of {key} failed: {message} (the encrypted spill was kept)")]
    Upload { key: String, message: String, fault: Option<DestinationFault> },
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
        (Ok(result), Some(session)) => notifier.success(session, result, &opts.destination.describe()),
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
        RecordingError::Upload { fault: Some(f), .. } => match f {
            DestinationFault::Permission => ("destination_permission_denied", "customer"),
            DestinationFault::Missing => ("destination_missing", "customer"),
            DestinationFault::Credentials => ("destination_credentials_invalid", "customer"),
            DestinationFault::Unreachable => ("destination_unreachable", "internal"),
        },
        RecordingError::Upload { fault: None, .. } => ("upload_failed", "internal"),
        RecordingError::Compose(_) | RecordingError::Partial { .. } => ("composition_failed", "internal"),
        RecordingError::SpillDir { .. } | RecordingError::Spill(_) => ("local_storage_failed", "internal"),
    };
    Failure { error_type, fault, message: e.to_string() }
}

/// Composites `session`, spills it encrypted, uploads and confirms, then wipes the spill.
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

    // Chat CSV first: it is known up front and goes through the spill like the video.
    let chat_spill = match (&session.chat, opts.chat) {
        (Some(messages), true) => {
            let csv = zeroize::Zeroizing::new(chat::csv(&chat::recorded(messages, opts.include_direct), session.started_at));
            let mut w = SpillWriter::create(&spill_path(&opts.spill_dir)?, &key)?;
            w.write(csv.as_bytes())?;
            w.finish()?;
            Some(w)
        }
        _ => None,
    };

    // Composite into the video spill.
    let mut video = SpillWriter::create(&spill_path(&opts.spill_dir)?, &key)?;
    let video_path = video.path().to_owned();
    let shared_writer = std::sync::Arc::new(std::sync::Mutex::new(video));
    let sink_writer = shared_writer.clone();
    let compose_opts = compose::Options {
        layout: opts.layout,
        profile: profile.clone(),
        chat_panel: opts.chat,
        include_direct: opts.include_direct,
    };
    // Seal a chunk at least every second or 256 KiB, so ciphertext reaches the disk (and,
    // later, the uploader) while recording, and a crash loses little.
    let mut last_seal = std::time::Instant::now();
    let sink = move |bytes: &[u8]| -> Result<(), String> {
        let mut w = sink_writer.lock().map_err(|_| "spill lock poisoned".to_string())?;
        w.write(bytes).map_err(|e| e.to_string())?;
        if w.buffered() >= SEAL_BYTES || last_seal.elapsed() >= SEAL_INTERVAL {
            w.flush().map_err(|e| e.to_string())?;
            last_seal = std::time::Instant::now();
        }
        Ok(())
    };
    let compositor = Compositor::build(session, &compose_opts, Box::new(sink))?;
    let composed = compositor.run(progress);
    video = std::sync::Arc::try_unwrap(shared_writer)
        .map_err(|_| spill::SpillError::Finished { path: video_path.clone() })?
        .into_inner()
        .map_err(|_| spill::SpillError::Finished { path: video_path.clone() })?;
    // Even a failed composite leaves a playable fragmented MP4: seal and deliver what exists.
    video.finish()?;

    let video_key = object_key(dest.prefix(), "composite", &session.room_id, session.started_at, &profile.extension);
    let video_obj = upload_then_wipe(dest, &video_key, &profile.content_type, &video, &key)?;
    objects.push(OutputObject { kind: "composite", object: video_obj });
    let report = composed.map_err(|source| RecordingError::Partial { source, key: video_key.clone() })?;

    if let Some(w) = &chat_spill {
        let chat_key = object_key(dest.prefix(), "chat", &session.room_id, session.started_at, "csv");
        let o = upload_then_wipe(dest, &chat_key, "text/csv; charset=utf-8", w, &key)?;
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

/// Uploads one finished spill; deletes it only when the destination holds the whole object.
fn upload_then_wipe(dest: &Destination, key: &str, content_type: &str, spill: &SpillWriter, spill_key: &SpillKey) -> Result<StoredObject, RecordingError> {
    match dest.put(key, content_type, spill.path(), spill_key) {
        Ok(o) => {
            let _ = spill::shred(spill.path());
            Ok(o)
        }
        Err(PutFailure { error, complete: Some(_) }) => {
            let _ = spill::shred(spill.path());
            let fault = fault_of(&error);
            Err(RecordingError::Upload { key: key.into(), message: format!("{error} (the object is complete at the destination)"), fault })
        }
        Err(PutFailure { error, complete: None }) => {
            let fault = fault_of(&error);
            Err(RecordingError::Upload { key: key.into(), message: error.to_string(), fault })
        }
    }
}

fn fault_of(e: &UploadError) -> Option<DestinationFault> {
    match e {
        UploadError::Destination { fault, .. } => Some(*fault),
        UploadError::Spill(_) => None,
    }
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
fn prepare_spill_dir(dir: &Path) -> Result<(), RecordingError> {
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

/// A fresh random spill file name: no room, peer or session names on disk.
fn spill_path(dir: &Path) -> Result<PathBuf, RecordingError> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut id).map_err(|_| spill::SpillError::Random)?;
    Ok(dir.join(format!("{}.spill", hex(&id))))
}
