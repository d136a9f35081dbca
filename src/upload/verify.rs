//! `veil verify-bucket`: checks that a destination's credentials can write and nothing else.
//! The one place veil issues read, head and list calls, on purpose, against a probe object
//! it has just written; recordings never do.

use serde::Serialize;

use super::{Destination, UploadError};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub operation: &'static str,
    pub allowed: bool,
    /// What the destination answered (status/code or the error), never a credential.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub destination: String,
    pub probe_key: String,
    pub checks: Vec<Check>,
    /// Writes succeed and reads, heads and lists are all denied.
    pub write_only: bool,
}

impl Verdict {
    pub fn table(&self) -> String {
        let mut s = format!("destination {}\nprobe object {}\n\n{:<8} {:<8} detail\n", self.destination, self.probe_key, "call", "result");
        for c in &self.checks {
            s.push_str(&format!("{:<8} {:<8} {}\n", c.operation, if c.allowed { "ALLOWED" } else { "denied" }, c.detail));
        }
        s.push_str(if self.write_only { "\nwrite-only: yes\n" } else { "\nwrite-only: NO\n" });
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the probe write failed: {0}")]
    Write(UploadError),
    #[error("{0} cannot be verified: only bucket destinations can")]
    NotABucket(String),
}

/// Writes a probe object, then tries to read it, head it and list its prefix.
pub fn verify(dest: &Destination) -> Result<Verdict, VerifyError> {
    match dest {
        Destination::S3(d) => s3(d),
        Destination::Azure(d) => azure(d),
        Destination::Local(_) => Err(VerifyError::NotABucket(dest.describe())),
        Destination::Gcs(d) => gcs(d),
    }
}

fn probe_key(prefix: &str) -> String {
    let id = crate::webhook::random_id("probe");
    if prefix.is_empty() { format!(".veil-verify/{id}.txt") } else { format!("{prefix}/.veil-verify/{id}.txt") }
}

const PROBE_BODY: &[u8] = b"veil verify-bucket probe: safe to delete\n";

fn s3(d: &super::s3::S3Dest) -> Result<Verdict, VerifyError> {
    use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
    let rt = super::s3::runtime(&d.describe()).map_err(VerifyError::Write)?;
    let client = d.client();
    let key = probe_key(&d.prefix);
    let sum = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ring::digest::digest(&ring::digest::SHA256, PROBE_BODY));
    rt.block_on(
        client
            .put_object()
            .bucket(&d.bucket)
            .key(&key)
            .content_type("text/plain")
            .checksum_sha256(sum)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(PROBE_BODY))
            .send(),
    )
    .map_err(|e| VerifyError::Write(d.error("PutObject", "s3:PutObject", &key, e)))?;

    fn outcome<T, E: ProvideErrorMetadata>(r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>) -> (bool, String) {
        match r {
            Ok(_) => (true, "succeeded".into()),
            Err(SdkError::ServiceError(se)) => {
                let status = se.raw().status().as_u16();
                (false, format!("HTTP {status} {}", se.err().code().unwrap_or("")).trim_end().to_owned())
            }
            Err(e) => (false, format!("no answer ({})", short(&e.to_string()))),
        }
    }
    let mut checks = vec![Check { operation: "write", allowed: true, detail: "PutObject succeeded".into() }];
    let (a, detail) = outcome(rt.block_on(client.get_object().bucket(&d.bucket).key(&key).send()));
    checks.push(Check { operation: "read", allowed: a, detail });
    let (a, detail) = outcome(rt.block_on(client.head_object().bucket(&d.bucket).key(&key).send()));
    checks.push(Check { operation: "head", allowed: a, detail });
    let list_prefix = key.rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or_default();
    let (a, detail) = outcome(rt.block_on(client.list_objects_v2().bucket(&d.bucket).prefix(list_prefix).max_keys(1).send()));
    checks.push(Check { operation: "list", allowed: a, detail });
    let write_only = write_only(&checks);
    Ok(Verdict { destination: d.describe(), probe_key: key, checks, write_only })
}

fn azure(d: &super::azure::AzureDest) -> Result<Verdict, VerifyError> {
    use azure_storage_blob::{BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions};
    use futures::StreamExt;
    let rt = super::s3::runtime(&d.describe()).map_err(VerifyError::Write)?;
    let key = probe_key(&d.prefix);
    let opts = || BlobClientOptions { client_options: super::azure::AzureDest::options(), ..Default::default() };
    let url = d.blob_url(&key).map_err(VerifyError::Write)?;
    let blob = BlobClient::new(url, None, Some(opts())).map_err(|e| VerifyError::Write(d.error("client", &key, &e)))?;
    rt.block_on(blob.upload(azure_core::Bytes::from_static(PROBE_BODY).into(), None))
        .map_err(|e| VerifyError::Write(d.error("Put Blob", &key, &e)))?;
    // Only status and error code are shown: the SDK's messages may quote the SAS URL.
    fn outcome<T>(r: azure_core::Result<T>) -> (bool, String) {
        match r {
            Ok(_) => (true, "succeeded".into()),
            Err(e) => match e.kind() {
                azure_core::error::ErrorKind::HttpResponse { status, error_code, .. } => {
                    let code: String = error_code.as_deref().unwrap_or("").chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                    (false, format!("HTTP {} {code}", u16::from(*status)).trim_end().to_owned())
                }
                _ => (false, "no answer".into()),
            },
        }
    }
    let mut checks = vec![Check { operation: "write", allowed: true, detail: "Put Blob succeeded".into() }];
    let (a, detail) = outcome(rt.block_on(blob.download(None)));
    checks.push(Check { operation: "read", allowed: a, detail });
    let (a, detail) = outcome(rt.block_on(blob.get_properties(None)));
    checks.push(Check { operation: "head", allowed: a, detail });
    let container_url = d.container_url().map_err(VerifyError::Write)?;
    let container = BlobContainerClient::new(container_url, None, Some(BlobContainerClientOptions { client_options: super::azure::AzureDest::options(), ..Default::default() }))
        .map_err(|e| VerifyError::Write(d.error("client", &key, &e)))?;
    let listed = match container.list_blobs(None) {
        Ok(pager) => rt.block_on(async { pager.into_pages().next().await.unwrap_or_else(|| Err(azure_core::Error::with_message(azure_core::error::ErrorKind::Other, "empty"))) }).map(|_| ()),
        Err(e) => Err(e),
    };
    let (a, detail) = outcome(listed);
    checks.push(Check { operation: "list", allowed: a, detail });
    let write_only = write_only(&checks);
    Ok(Verdict { destination: d.describe(), probe_key: key, checks, write_only })
}

/// Write through the client library; read (media), head (object metadata) and list through the
/// JSON API with the same credentials (the library offers metadata and listing only over gRPC).
fn gcs(d: &super::gcs::GcsDest) -> Result<Verdict, VerifyError> {
    let rt = super::s3::runtime(&d.describe()).map_err(VerifyError::Write)?;
    let key = probe_key(&d.prefix);
    let bucket = format!("projects/_/buckets/{}", d.bucket);
    rt.block_on(async {
        let client = d.client().await.map_err(VerifyError::Write)?;
        client
            .write_object(bucket.clone(), key.clone(), bytes::Bytes::from_static(PROBE_BODY))
            .send_buffered()
            .await
            .map_err(|e| VerifyError::Write(d.error("write", &key, &e)))?;
        let mut checks = vec![Check { operation: "write", allowed: true, detail: "object written".into() }];
        let auth = d.auth_headers().await.map_err(VerifyError::Write)?;
        let enc = |s: &str| -> String { s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect() };
        let base = format!("{}/storage/v1/b/{}/o", d.endpoint().trim_end_matches('/'), enc(&d.bucket));
        let prefix = key.rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or_default();
        let calls = [
            ("read", format!("{base}/{}?alt=media", enc(&key))),
            ("head", format!("{base}/{}", enc(&key))),
            ("list", format!("{base}?maxResults=1&prefix={}", enc(&prefix))),
        ];
        for (operation, url) in calls {
            let mut req = ureq::get(&url).config().http_status_as_error(false).build();
            for (name, value) in auth.iter() {
                if let Ok(v) = value.to_str() {
                    req = req.header(name.as_str(), v);
                }
            }
            let (allowed, detail) = match req.call() {
                Ok(r) if r.status().is_success() => (true, "succeeded".to_owned()),
                Ok(r) => (false, format!("HTTP {}", r.status().as_u16())),
                Err(_) => (false, "no answer".to_owned()),
            };
            checks.push(Check { operation, allowed, detail });
        }
        let write_only = write_only(&checks);
        Ok(Verdict { destination: d.describe(), probe_key: key, checks, write_only })
    })
}

/// The write succeeded and every other call was refused by the destination itself (an HTTP
/// 4xx); a call that got no answer proves nothing.
fn write_only(checks: &[Check]) -> bool {
    checks.iter().all(|c| if c.operation == "write" { c.allowed } else { !c.allowed && c.detail.starts_with("HTTP 4") })
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}
