//! Uploaders: stream a recording into its destination part by part and confirm it landed.
//! One trait ([`ObjectUpload`]), one module per destination, and [`stream`], the driver that
//! feeds parts from the encrypted spill, retries and resumes, and wipes what is confirmed.
//! Uploaders only ever write to the destination: no read, head or list calls (the local
//! folder's own `stat` after rename is the exception, as it is the operator's disk, not a
//! customer bucket; `verify` is the one command that probes reads, on purpose).

pub mod azure;
pub mod gcs;
pub mod local;
pub mod s3;
pub mod stream;
pub mod verify;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct StoredObject {
    pub key: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
    /// What the destination's completion response proved.
    pub confirmed_by: String,
    /// How the upload kept pace with the recording (set by the streaming driver).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streaming: Option<StreamStats>,
}

impl StoredObject {
    /// What an uploader's `complete` returns once the destination confirmed the object (the
    /// streaming driver adds `streaming`).
    pub fn confirmed(key: &str, url: String, size: u64, sha256: &str, content_type: &str, confirmed_by: impl Into<String>) -> Self {
        Self { key: key.to_owned(), url, size, sha256: sha256.to_owned(), content_type: content_type.to_owned(), confirmed_by: confirmed_by.into(), streaming: None }
    }
}

/// Proof that an upload streamed: parts went out while the recording ran, and the end of the
/// recording was followed by only the last part and the completion.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StreamStats {
    pub parts: u32,
    /// Parts already uploaded when the recording ended (the muxer's end of stream).
    pub parts_uploaded_before_end: u32,
    /// From the end of the recording to the destination's confirmation of the object.
    pub end_to_confirmed_ms: u64,
}

/// Whose fault a destination error is, for `recording.failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationFault {
    /// The credentials may not write there.
    Permission,
    /// The bucket or folder does not exist.
    Missing,
    /// The credentials were refused.
    Credentials,
    /// The destination could not be reached or failed (transient: retried).
    Unreachable,
    /// The destination refused the request for another reason (not retried).
    Rejected,
}

impl DestinationFault {
    pub fn from_io(kind: std::io::ErrorKind) -> Self {
        match kind {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => Self::Permission,
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => Self::Missing,
            _ => Self::Unreachable,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("destination {dest}: {message}")]
    Destination { dest: String, message: String, fault: DestinationFault },
    #[error(transparent)]
    Spill(#[from] crate::spill::SpillError),
}

impl UploadError {
    /// Worth retrying: timeouts, 5xx, throttling and connection errors.
    pub fn is_transient(&self) -> bool {
        matches!(self, UploadError::Destination { fault: DestinationFault::Unreachable, .. })
    }
    pub fn fault(&self) -> Option<DestinationFault> {
        match self {
            UploadError::Destination { fault, .. } => Some(*fault),
            UploadError::Spill(_) => None,
        }
    }
}

/// One object being written. Parts are numbered from 1 and sent in order; a part may be sent
/// again after an error (it replaces the earlier attempt). `put_part` returns only once the
/// destination has confirmed the part.
pub trait ObjectUpload: Send {
    /// Whether `put_part` returning means the part is stored. When false, parts are
    /// confirmed only with the object: the caller keeps them until `complete` succeeds and
    /// after a failure starts a new upload and sends them again.
    fn confirms_parts(&self) -> bool {
        true
    }
    fn put_part(&mut self, number: u32, data: &[u8]) -> Result<(), UploadError>;
    /// Finishes the object and checks the destination's confirmation. `size` and `sha256`
    /// are computed locally over everything sent.
    fn complete(&mut self, size: u64, sha256: &str) -> Result<StoredObject, UploadError>;
    /// Best effort: discard what was sent (cancel).
    fn abort(&mut self);
}

/// Where recordings go, parsed from a destination URL.
#[derive(Debug, Clone)]
pub enum Destination {
    Local(local::LocalDir),
    S3(s3::S3Dest),
    Gcs(gcs::GcsDest),
    Azure(azure::AzureDest),
}

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("destination `{0}`: expected s3://bucket/prefix, gs://bucket/prefix, an Azure Blob URL with a SAS (https://ACCOUNT.blob.core.windows.net/CONTAINER/prefix?SAS) or file:///absolute/dir")]
    Unsupported(String),
    #[error("destination `{url}`: {message}")]
    Invalid { url: String, message: String },
}

impl Destination {
    /// Parses a destination URL; credentials come from the process environment.
    pub fn parse(url: &str) -> Result<Self, DestinationError> {
        Self::parse_with_env(url, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn parse_with_env(url: &str, env: s3::Env) -> Result<Self, DestinationError> {
        // Never echo a query string: it may carry a SAS token.
        let shown = url.split('?').next().unwrap_or_default().to_owned();
        let invalid = |message| DestinationError::Invalid { url: shown.clone(), message };
        if let Some(rest) = url.strip_prefix("file://") {
            return local::LocalDir::parse(rest).map(Destination::Local).map_err(invalid);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return s3::S3Dest::parse(rest, env).map(Destination::S3).map_err(invalid);
        }
        if let Some(rest) = url.strip_prefix("gs://") {
            return gcs::GcsDest::parse(rest, env).map(Destination::Gcs).map_err(invalid);
        }
        if url.starts_with("https://") || url.starts_with("http://") {
            return azure::AzureDest::parse(url).map(Destination::Azure).map_err(invalid);
        }
        Err(DestinationError::Unsupported(shown))
    }

    /// Sets the part size (clamped to what the destination accepts).
    pub fn set_part_size(&mut self, bytes: usize) {
        match self {
            Destination::Local(d) => d.part_size = bytes.max(1),
            Destination::S3(d) => d.part_size = bytes.max(s3::MIN_PART),
            Destination::Azure(d) => d.part_size = bytes.clamp(1, 4000 << 20),
            // The library sends 256 KiB multiples; whole parts keep it simple.
            Destination::Gcs(d) => d.part_size = bytes.max(256 << 10).next_multiple_of(256 << 10),
        }
    }

    pub fn part_size(&self) -> usize {
        match self {
            Destination::Local(d) => d.part_size,
            Destination::S3(d) => d.part_size,
            Destination::Azure(d) => d.part_size,
            Destination::Gcs(d) => d.part_size,
        }
    }

    /// Size of the first part: smaller where the destination allows parts of any size, so
    /// that the upload (and any refusal) starts early.
    pub fn first_part_size(&self) -> usize {
        match self {
            Destination::Azure(d) => d.part_size.min(azure::FIRST_PART),
            _ => self.part_size(),
        }
    }

    /// Starts writing one object.
    pub fn begin(&self, key: &str, content_type: &str) -> Result<Box<dyn ObjectUpload>, UploadError> {
        Ok(match self {
            Destination::Local(d) => Box::new(d.begin(key, content_type)?),
            Destination::S3(d) => Box::new(d.begin(key, content_type)?),
            Destination::Azure(d) => Box::new(d.begin(key, content_type)?),
            Destination::Gcs(d) => Box::new(d.begin(key, content_type)?),
        })
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Destination::Local(_))
    }

    /// The destination as shown in results and webhooks: no credentials, no query.
    pub fn describe(&self) -> String {
        match self {
            Destination::Local(d) => format!("file://{}", d.root().display()),
            Destination::S3(d) => d.describe(),
            Destination::Azure(d) => d.describe(),
            Destination::Gcs(d) => d.describe(),
        }
    }

    /// The bucket (or, for a local folder, the folder) objects are written to.
    pub fn bucket(&self) -> String {
        match self {
            Destination::Local(d) => d.root().display().to_string(),
            Destination::S3(d) => d.bucket.clone(),
            Destination::Azure(d) => d.container.clone(),
            Destination::Gcs(d) => d.bucket.clone(),
        }
    }

    /// The key prefix configured in the destination URL ("" for none).
    pub fn prefix(&self) -> &str {
        match self {
            Destination::Local(_) => "",
            Destination::S3(d) => &d.prefix,
            Destination::Azure(d) => &d.prefix,
            Destination::Gcs(d) => &d.prefix,
        }
    }
}

/// `{prefix}/{kind}/{room_id}/{yyyy-mm-dd}/Rec-{room_id}-{epoch}.{ext}` (no leading slash
/// when the prefix is empty).
pub fn object_key(prefix: &str, kind: &str, room_id: &str, started_at: chrono::DateTime<chrono::Utc>, ext: &str) -> String {
    let date = started_at.format("%Y-%m-%d");
    let epoch = started_at.timestamp();
    let tail = format!("{kind}/{room_id}/{date}/Rec-{room_id}-{epoch}.{ext}");
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() { tail } else { format!("{prefix}/{tail}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(object_key("", "composite", "room-42", t, "mp4"), "composite/room-42/2026-11-30/Rec-room-42-1796047200.mp4");
        assert_eq!(object_key("/rec/a/", "chat", "r", t, "csv"), "rec/a/chat/r/2026-11-30/Rec-r-1796047200.csv");
    }

    #[test]
    fn unsupported_destination_hides_query() {
        let e = Destination::parse("gs://b/p?sig=SECRET").unwrap_err().to_string();
        assert!(!e.contains("SECRET"), "{e}");
        let e = Destination::parse("https://acct.blob.core.windows.net/c/p?sv=1").unwrap_err().to_string();
        assert!(e.contains("sig="), "{e}");
        assert!(Destination::parse("file://relative/dir").is_err());
    }
}
