//! `gs://bucket/prefix`: a resumable upload with google-cloud-storage, write calls only.
//!
//! The client library runs the resumable session itself: parts are fed to it through a
//! bounded channel as a [`StreamingSource`] of unknown length, and it sends them in chunks of
//! 256 KiB multiples, resuming from the session's persisted size after a broken connection.
//! It does not tell which bytes the service has persisted, so parts are confirmed only when
//! the object is: the spill keeps every segment until then ([`ObjectUpload::confirms_parts`]
//! is false), and a failed session is restarted from the first part. The final object's
//! size, CRC32C and MD5 must equal the ones computed here.
//!
//! Credentials: `GOOGLE_APPLICATION_CREDENTIALS` (a service account JSON file), or anonymous
//! against an emulator named by `STORAGE_EMULATOR_HOST` (which the library does not read by
//! itself).

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use google_cloud_storage::client::Storage;
use google_cloud_storage::streaming_source::StreamingSource;
use md5::{Digest, Md5};

use super::{DestinationFault, ObjectUpload, StoredObject, UploadError};
use super::s3::Env;

/// A service account key given as JSON text rather than a file (job documents).
pub const CREDENTIALS_JSON_VAR: &str = "VEIL_GCS_CREDENTIALS_JSON";

/// Parts follow the S3 default; the library chunks them in 256 KiB multiples.
pub const DEFAULT_PART: usize = 8 << 20;

#[derive(Clone)]
pub struct GcsDest {
    pub bucket: String,
    pub prefix: String,
    /// `STORAGE_EMULATOR_HOST`, as an endpoint URL.
    pub emulator: Option<String>,
    /// A service account JSON file (`GOOGLE_APPLICATION_CREDENTIALS`); its contents are read
    /// when an upload starts and never logged.
    pub credentials_file: Option<std::path::PathBuf>,
    /// Or the key itself.
    pub credentials_json: Option<crate::privacy::Redacted<String>>,
    pub part_size: usize,
}

impl std::fmt::Debug for GcsDest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsDest").field("bucket", &self.bucket).field("prefix", &self.prefix).field("emulator", &self.emulator).finish_non_exhaustive()
    }
}

impl GcsDest {
    pub fn parse(rest: &str, env: Env) -> Result<Self, String> {
        if rest.contains('?') || rest.contains('#') {
            return Err("a gs:// destination takes no query or fragment (credentials come from the environment)".into());
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !(3..=63).contains(&bucket.len()) || !bucket.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c)) {
            return Err("the bucket name must be 3-63 characters of a-z, 0-9, '-', '_' and '.'".into());
        }
        let emulator = env("STORAGE_EMULATOR_HOST").map(|h| if h.contains("://") { h } else { format!("http://{h}") });
        let credentials_file = env("GOOGLE_APPLICATION_CREDENTIALS").map(std::path::PathBuf::from);
        let credentials_json = env(CREDENTIALS_JSON_VAR).map(crate::privacy::Redacted::new);
        if emulator.is_none() && credentials_file.is_none() && credentials_json.is_none() {
            return Err("GOOGLE_APPLICATION_CREDENTIALS is not set (or STORAGE_EMULATOR_HOST for an emulator)".into());
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned(), emulator, credentials_file, credentials_json, part_size: DEFAULT_PART })
    }

    pub fn describe(&self) -> String {
        if self.prefix.is_empty() { format!("gs://{}", self.bucket) } else { format!("gs://{}/{}", self.bucket, self.prefix) }
    }

    fn fail(&self, message: String, fault: DestinationFault) -> UploadError {
        UploadError::Destination { dest: self.describe(), message, fault }
    }

    /// The JSON API's base URL.
    pub(crate) fn endpoint(&self) -> String {
        self.emulator.clone().unwrap_or_else(|| "https://storage.googleapis.com".into())
    }

    pub(crate) fn credentials(&self) -> Result<google_cloud_auth::credentials::Credentials, UploadError> {
        if self.emulator.is_some() {
            return Ok(google_cloud_auth::credentials::anonymous::Builder::new().build());
        }
        let (json, what) = match (&self.credentials_json, &self.credentials_file) {
            (Some(j), _) => (zeroize::Zeroizing::new(j.expose().as_bytes().to_vec()), "the service account key".to_owned()),
            (None, Some(f)) => {
                let bytes = std::fs::read(f).map_err(|e| self.fail(format!("cannot read GOOGLE_APPLICATION_CREDENTIALS ({}): {e}", f.display()), DestinationFault::Credentials))?;
                (zeroize::Zeroizing::new(bytes), f.display().to_string())
            }
            (None, None) => return Err(self.fail("no credentials".into(), DestinationFault::Credentials)),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|_| self.fail(format!("{what} is not service account JSON"), DestinationFault::Credentials))?;
        google_cloud_auth::credentials::service_account::Builder::new(value)
            .build()
            .map_err(|_| self.fail(format!("{what} is not a usable service account key"), DestinationFault::Credentials))
    }

    pub(crate) async fn client(&self) -> Result<Storage, UploadError> {
        let mut b = Storage::builder().with_credentials(self.credentials()?);
        if let Some(e) = &self.emulator {
            b = b.with_endpoint(e.clone());
        }
        b.build().await.map_err(|_| self.fail("cannot build the storage client".into(), DestinationFault::Unreachable))
    }

    /// The Authorization header (if any) for plain JSON API calls (verify-bucket only).
    pub(crate) async fn auth_headers(&self) -> Result<http::HeaderMap, UploadError> {
        use google_cloud_auth::credentials::CacheableResource;
        match self.credentials()?.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            Ok(CacheableResource::NotModified) => Ok(http::HeaderMap::new()),
            Err(_) => Err(self.fail("the credentials could not produce a token".into(), DestinationFault::Credentials)),
        }
    }

    /// Maps a client error by its HTTP status and kind only (its text may quote requests).
    pub(crate) fn error(&self, op: &str, key: &str, e: &google_cloud_storage::Error) -> UploadError {
        let (fault, detail) = match e.http_status_code() {
            Some(401) => (DestinationFault::Credentials, "failed (HTTP 401)".to_owned()),
            Some(403) => (DestinationFault::Permission, "failed (HTTP 403)".to_owned()),
            Some(404) => (DestinationFault::Missing, "failed (HTTP 404)".to_owned()),
            Some(s @ (408 | 429 | 500..=599)) => (DestinationFault::Unreachable, format!("failed (HTTP {s})")),
            Some(s) => (DestinationFault::Rejected, format!("failed (HTTP {s})")),
            None if e.is_authentication() => (DestinationFault::Credentials, "failed (the credentials were refused)".to_owned()),
            None if e.is_timeout() => (DestinationFault::Unreachable, "timed out".to_owned()),
            None => (DestinationFault::Unreachable, "failed (cannot reach the endpoint)".to_owned()),
        };
        let hint = match fault {
            DestinationFault::Permission => format!(": the credentials need storage.objects.create on {}/{key}", self.bucket),
            DestinationFault::Missing => format!(": bucket `{}` does not exist", self.bucket),
            _ => String::new(),
        };
        self.fail(format!("{op} {detail}{hint}"), fault)
    }

    pub fn begin(&self, key: &str, content_type: &str) -> Result<GcsUpload, UploadError> {
        // Capacity 1: the recorder waits while the library works off the previous part, so
        // memory stays at about two parts.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
        let (done_tx, done_rx) = std_mpsc::channel();
        let (dest, k, ct) = (self.clone(), key.to_owned(), content_type.to_owned());
        let worker = std::thread::Builder::new()
            .name("veil-gcs".into())
            .spawn(move || {
                let r = (|| {
                    let rt = super::s3::runtime(&dest.describe())?;
                    rt.block_on(async {
                        let client = dest.client().await?;
                        client
                            .write_object(format!("projects/_/buckets/{}", dest.bucket), k.clone(), ChannelSource(rx))
                            .set_content_type(ct)
                            // Always resumable: the length is unknown while recording.
                            .with_resumable_upload_threshold(0usize)
                            .send_buffered()
                            .await
                            .map_err(|e| dest.error("resumable upload", &k, &e))
                    })
                })();
                let _ = done_tx.send(r);
            })
            .map_err(|e| self.fail(format!("cannot start the upload thread: {e}"), DestinationFault::Unreachable))?;
        Ok(GcsUpload {
            dest: self.clone(),
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            tx: Some(tx),
            done: done_rx,
            worker: Some(worker),
            crc: 0,
            md5: Md5::new(),
            result: None,
        })
    }
}

/// The recorded parts as the library's payload.
struct ChannelSource(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>);

impl StreamingSource for ChannelSource {
    type Error = std::io::Error;

    fn next(&mut self) -> impl std::future::Future<Output = Option<Result<bytes::Bytes, Self::Error>>> + Send {
        self.0.recv()
    }
}

type Outcome = Result<google_cloud_storage::model::Object, UploadError>;

pub struct GcsUpload {
    dest: GcsDest,
    key: String,
    content_type: String,
    tx: Option<tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>>,
    done: std_mpsc::Receiver<Outcome>,
    worker: Option<JoinHandle<()>>,
    crc: u32,
    md5: Md5,
    result: Option<Outcome>,
}

impl GcsUpload {
    fn outcome(&mut self) -> &Outcome {
        if self.result.is_none() {
            let r = self.done.recv().unwrap_or_else(|_| Err(self.dest.fail("the upload thread stopped".into(), DestinationFault::Unreachable)));
            if let Some(w) = self.worker.take() {
                let _ = w.join();
            }
            self.result = Some(r);
        }
        self.result.as_ref().expect("set above")
    }

    fn stopped_error(&mut self) -> UploadError {
        match self.outcome() {
            Err(UploadError::Destination { dest, message, fault }) => UploadError::Destination { dest: dest.clone(), message: message.clone(), fault: *fault },
            _ => self.dest.fail("the resumable upload ended early".into(), DestinationFault::Unreachable),
        }
    }
}

impl ObjectUpload for GcsUpload {
    fn confirms_parts(&self) -> bool {
        false
    }

    fn put_part(&mut self, _number: u32, data: &[u8]) -> Result<(), UploadError> {
        let Some(tx) = &self.tx else { return Err(self.stopped_error()) };
        if tx.blocking_send(Ok(bytes::Bytes::copy_from_slice(data))).is_err() {
            self.tx = None;
            return Err(self.stopped_error());
        }
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.md5.update(data);
        Ok(())
    }

    fn complete(&mut self, size: u64, sha256: &str) -> Result<StoredObject, UploadError> {
        self.tx = None; // end of the stream: the library finalizes the object
        let (crc, md5) = (self.crc, self.md5.clone().finalize().to_vec());
        let object = match self.outcome() {
            Ok(o) => o.clone(),
            Err(_) => return Err(self.stopped_error()),
        };
        let sums = object.checksums.clone().unwrap_or_default();
        if object.size != size as i64 {
            return Err(self.dest.fail(format!("the object holds {} bytes, {size} were sent", object.size), DestinationFault::Unreachable));
        }
        if sums.crc32c.is_some_and(|c| c != crc) || (!sums.md5_hash.is_empty() && sums.md5_hash.as_ref() != md5.as_slice()) {
            return Err(self.dest.fail("the object's checksum does not match what was sent".into(), DestinationFault::Unreachable));
        }
        let confirmed_by = match (sums.crc32c.is_some(), !sums.md5_hash.is_empty()) {
            (true, true) => "gcs object size, crc32c and md5",
            (true, false) => "gcs object size and crc32c",
            (false, true) => "gcs object size and md5",
            (false, false) => "gcs object size (the service returned no checksum)",
        };
        Ok(StoredObject::confirmed(&self.key, format!("gs://{}/{}", self.dest.bucket, self.key), size, sha256, &self.content_type, confirmed_by))
    }

    fn abort(&mut self) {
        // An error ends the payload without finalizing: no object appears, and the service
        // drops the unfinished session after a week.
        if let Some(tx) = self.tx.take() {
            let _ = tx.blocking_send(Err(std::io::Error::other("cancelled")));
        }
        if self.worker.is_some() {
            let _ = self.outcome();
        }
    }
}

impl Drop for GcsUpload {
    fn drop(&mut self) {
        if self.result.is_none() {
            self.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_emulator() {
        let env = |k: &str| match k {
            "STORAGE_EMULATOR_HOST" => Some("127.0.0.2:80".to_string()),
            _ => None,
        };
        let d = GcsDest::parse("rec/a/", &env).unwrap();
        assert_eq!((d.bucket.as_str(), d.prefix.as_str()), ("rec", "a"));
        assert_eq!(d.emulator.as_deref(), Some("http://127.0.0.2:80"));
        assert_eq!(d.describe(), "gs://rec/a");
        let none = |_: &str| None;
        assert!(GcsDest::parse("rec", &none).unwrap_err().contains("GOOGLE_APPLICATION_CREDENTIALS"));
        assert!(GcsDest::parse("R", &env).is_err());
    }
}
