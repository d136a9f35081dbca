//! `s3://bucket/prefix`: S3 multipart upload with aws-sdk-s3, write calls only.
//!
//! CreateMultipartUpload (SHA-256 checksums) → UploadPart per spill segment, each sent from
//! memory with the part's SHA-256 computed here → CompleteMultipartUpload. A part counts as
//! confirmed when the response carries the checksum we sent (or, from servers that return no
//! checksums, when it succeeds); the upload counts as confirmed when the completion's
//! composite checksum equals `sha256(part digests) + "-" + parts`.
//!
//! Credentials and endpoint come from the standard AWS environment, or from a job document
//! later; the SDK's own retries are off (the streaming driver retries with resumption).

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use base64::Engine;
use ring::digest::{digest, SHA256};

use super::{DestinationFault, ObjectUpload, StoredObject, UploadError};
use crate::privacy::Redacted;

/// S3's smallest allowed part (all parts but the last).
pub const MIN_PART: usize = 5 << 20;
pub const DEFAULT_PART: usize = 8 << 20;

/// Access key and secret; the secret and token redact themselves and are zeroized on drop.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: Redacted<String>,
    pub session_token: Option<Redacted<String>>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key id is not a secret, but it identifies the customer's account: keep it out too.
        f.write_str("S3Credentials(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct S3Dest {
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub credentials: S3Credentials,
    pub part_size: usize,
}

/// Reads a variable, treating empty as unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl S3Dest {
    /// Parses `s3://bucket[/prefix]` and takes credentials, region and endpoint from `env`.
    pub fn parse(rest: &str, env: Env) -> Result<Self, String> {
        if rest.contains('?') || rest.contains('#') {
            return Err("an s3:// destination takes no query or fragment (credentials come from the environment)".into());
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_bucket(bucket) {
            return Err("the bucket name must be 3-63 characters of a-z, 0-9, '.' and '-'".into());
        }
        let access_key_id = env("AWS_ACCESS_KEY_ID").ok_or("AWS_ACCESS_KEY_ID is not set")?;
        let secret = env("AWS_SECRET_ACCESS_KEY").ok_or("AWS_SECRET_ACCESS_KEY is not set")?;
        let endpoint = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL"));
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err("AWS_ENDPOINT_URL must start with http:// or https://".into());
            }
        }
        let forced = env("AWS_S3_FORCE_PATH_STYLE").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let path_style = forced || endpoint.as_deref().is_some_and(host_needs_path_style);
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
            endpoint,
            path_style,
            credentials: S3Credentials {
                access_key_id,
                secret_access_key: Redacted::new(secret),
                session_token: env("AWS_SESSION_TOKEN").map(Redacted::new),
            },
            part_size: DEFAULT_PART,
        })
    }

    pub fn describe(&self) -> String {
        if self.prefix.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{}", self.bucket, self.prefix) }
    }

    pub fn client(&self) -> Client {
        let c = &self.credentials;
        let creds = Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.expose().as_str(),
            c.session_token.as_ref().map(|t| t.expose().clone()),
            None,
            "veil",
        );
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(creds)
            .force_path_style(self.path_style)
            // We send our own SHA-256 per part; the SDK must not add a CRC32 of its own.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(e) = &self.endpoint {
            b = b.endpoint_url(e.clone());
        }
        Client::from_conf(b.build())
    }

    pub fn begin(&self, key: &str, content_type: &str) -> Result<S3Upload, UploadError> {
        let rt = runtime(&self.describe())?;
        let client = self.client();
        let out = rt
            .block_on(
                client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type(content_type)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .send(),
            )
            .map_err(|e| self.error("CreateMultipartUpload", "s3:PutObject", key, e))?;
        let upload_id = out.upload_id().map(str::to_owned).ok_or_else(|| self.protocol("CreateMultipartUpload returned no upload id"))?;
        Ok(S3Upload { dest: self.clone(), rt, client, key: key.to_owned(), content_type: content_type.to_owned(), upload_id, parts: Vec::new() })
    }

    /// Maps an SDK error to a destination error that names the operation and, for a denial,
    /// the permission the credentials lack. Never includes credentials.
    pub fn error<E: ProvideErrorMetadata>(&self, op: &str, permission: &str, key: &str, e: SdkError<E, HttpResponse>) -> UploadError {
        let (fault, detail) = match &e {
            SdkError::ServiceError(se) => {
                classify(se.raw().status().as_u16(), se.err().code().unwrap_or(""), se.err().message().unwrap_or(""))
            }
            SdkError::TimeoutError(_) => (DestinationFault::Unreachable, "timed out".to_owned()),
            SdkError::DispatchFailure(d) => (DestinationFault::Unreachable, format!("cannot reach the endpoint ({})", dispatch_kind(d.is_timeout(), d.is_io()))),
            SdkError::ResponseError(_) => (DestinationFault::Unreachable, "unreadable response".to_owned()),
            _ => (DestinationFault::Unreachable, "request could not be built".to_owned()),
        };
        let hint = match fault {
            DestinationFault::Permission => format!(": the credentials need {permission} on {}/{key}", self.bucket),
            DestinationFault::Missing => format!(": bucket `{}` does not exist", self.bucket),
            DestinationFault::Credentials => ": the access key or secret was refused".to_owned(),
            DestinationFault::Unreachable | DestinationFault::Rejected => String::new(),
        };
        UploadError::Destination { dest: self.describe(), message: format!("{op} {detail}{hint}"), fault }
    }

    fn protocol(&self, message: &str) -> UploadError {
        UploadError::Destination { dest: self.describe(), message: message.to_owned(), fault: DestinationFault::Unreachable }
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// The server's message is used to tell bad credentials from a denial but never shown: it may
/// quote the access key id.
fn classify(status: u16, code: &str, message: &str) -> (DestinationFault, String) {
    let shown = if code.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status} {code}") };
    let m = message.to_ascii_lowercase();
    let bad_credentials = status == 403 && (m.contains("signature") || m.contains("no such key") || m.contains("access key"));
    let fault = match (status, code) {
        _ if bad_credentials => DestinationFault::Credentials,
        (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken" | "AuthorizationHeaderMalformed") => DestinationFault::Credentials,
        (401, _) => DestinationFault::Credentials,
        (403, _) => DestinationFault::Permission,
        (404, "NoSuchBucket") => DestinationFault::Missing,
        (408 | 429 | 500..=599, _) | (_, "BadDigest" | "RequestTimeout" | "SlowDown") => DestinationFault::Unreachable,
        _ => DestinationFault::Rejected,
    };
    (fault, format!("failed ({shown})"))
}

fn dispatch_kind(timeout: bool, io: bool) -> &'static str {
    if timeout {
        "timeout"
    } else if io {
        "connection error"
    } else {
        "connection failed"
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
}

/// Endpoints addressed by IP or `localhost` cannot take virtual-hosted bucket names.
fn host_needs_path_style(endpoint: &str) -> bool {
    let rest = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        return v6.contains(']');
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost" || host.ends_with(".localhost") || host.parse::<std::net::Ipv4Addr>().is_ok()
}

pub(crate) fn runtime(dest: &str) -> Result<tokio::runtime::Runtime, UploadError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| UploadError::Destination {
        dest: dest.to_owned(),
        message: format!("cannot start the I/O runtime: {e}"),
        fault: DestinationFault::Unreachable,
    })
}

pub struct S3Upload {
    dest: S3Dest,
    rt: tokio::runtime::Runtime,
    client: Client,
    key: String,
    content_type: String,
    upload_id: String,
    /// (part number, ETag, checksum we sent, raw digest)
    parts: Vec<(i32, String, String, [u8; 32])>,
}

/// The text of the first `<tag>…</tag>` in a small XML document (no entities expected).
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].replace("&quot;", "\"").replace("&#34;", "\""))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// S3's checksum of a multipart object: SHA-256 over the parts' raw digests, then `-N`.
pub fn composite_sha256(digests: &[[u8; 32]]) -> String {
    let joined: Vec<u8> = digests.iter().flatten().copied().collect();
    format!("{}-{}", b64(digest(&SHA256, &joined).as_ref()), digests.len())
}

impl ObjectUpload for S3Upload {
    fn put_part(&mut self, number: u32, data: &[u8]) -> Result<(), UploadError> {
        let d = digest(&SHA256, data);
        let mut raw = [0u8; 32];
        raw.copy_from_slice(d.as_ref());
        let sum = b64(&raw);
        let number = i32::try_from(number).map_err(|_| self.dest.protocol("too many parts"))?;
        let out = self
            .rt
            .block_on(
                self.client
                    .upload_part()
                    .bucket(&self.dest.bucket)
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .part_number(number)
                    .content_length(data.len() as i64)
                    .checksum_sha256(&sum)
                    .body(ByteStream::from(data.to_vec()))
                    .send(),
            )
            .map_err(|e| self.dest.error("UploadPart", "s3:PutObject", &self.key, e))?;
        if let Some(echo) = out.checksum_sha256() {
            if echo != sum {
                return Err(self.dest.protocol(&format!("UploadPart {number}: the server's checksum does not match the part sent")));
            }
        }
        let etag = out.e_tag().map(str::to_owned).ok_or_else(|| self.dest.protocol("UploadPart returned no ETag"))?;
        self.parts.retain(|p| p.0 != number);
        self.parts.push((number, etag, sum, raw));
        Ok(())
    }

    fn complete(&mut self, size: u64, sha256: &str) -> Result<StoredObject, UploadError> {
        self.parts.sort_by_key(|p| p.0);
        let completed: Vec<CompletedPart> = self
            .parts
            .iter()
            .map(|(n, etag, sum, _)| CompletedPart::builder().part_number(*n).e_tag(etag).checksum_sha256(sum).build())
            .collect();
        let expected = composite_sha256(&self.parts.iter().map(|p| p.3).collect::<Vec<_>>());
        let sent = self.rt.block_on(
            self.client
                .complete_multipart_upload()
                .bucket(&self.dest.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
                .send(),
        );
        let (etag, checksum) = match sent {
            Ok(out) => (out.e_tag().map(str::to_owned), out.checksum_sha256().map(str::to_owned)),
            // Some S3 implementations (moto) name the result element differently; the SDK then
            // fails to decode a 200 that is a completion (an S3 error in a 200 has a code).
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 200 && se.err().code().is_none() => {
                let body = se.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                if !body.contains("<CompleteMultipartUpload") {
                    return Err(self.dest.protocol("CompleteMultipartUpload: HTTP 200 without a completion result"));
                }
                (xml_text(&body, "ETag"), xml_text(&body, "ChecksumSHA256"))
            }
            Err(e) => return Err(self.dest.error("CompleteMultipartUpload", "s3:PutObject", &self.key, e)),
        };
        // A multipart ETag ends in `-N`, N being the number of parts the server assembled.
        let etag_parts = etag.as_deref().and_then(|e| e.trim_matches('"').rsplit_once('-')).and_then(|(_, n)| n.parse::<usize>().ok());
        if etag_parts.is_some_and(|n| n != self.parts.len()) {
            return Err(self.dest.protocol("CompleteMultipartUpload: the server assembled a different number of parts than were sent"));
        }
        let confirmed_by = match (checksum, etag_parts) {
            (Some(got), _) if got == expected => "s3 composite sha256 and part count",
            (Some(_), _) => return Err(self.dest.protocol("CompleteMultipartUpload: the composite checksum does not match the parts sent")),
            (None, Some(_)) => "s3 part count (the server returned no checksum)",
            (None, None) => "s3 completion status (the server returned no checksum)",
        };
        Ok(StoredObject::confirmed(&self.key, format!("s3://{}/{}", self.dest.bucket, self.key), size, sha256, &self.content_type, confirmed_by))
    }

    fn abort(&mut self) {
        let r = self.rt.block_on(
            self.client.abort_multipart_upload().bucket(&self.dest.bucket).key(&self.key).upload_id(&self.upload_id).send(),
        );
        if let Err(e) = r {
            tracing::warn!(error = %self.dest.error("AbortMultipartUpload", "s3:AbortMultipartUpload", &self.key, e), "could not abort the multipart upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn parses_bucket_prefix_and_environment() {
        let e = env(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SEKRET"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900")]);
        let d = S3Dest::parse("rec/a/b/", &e).unwrap();
        assert_eq!((d.bucket.as_str(), d.prefix.as_str(), d.region.as_str()), ("rec", "a/b", "us-east-1"));
        assert!(d.path_style);
        assert!(!format!("{d:?}").contains("SEKRET"));
        assert_eq!(d.describe(), "s3://rec/a/b");
        let e = env(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "S"), ("AWS_ENDPOINT_URL", "https://s3.example.com")]);
        assert!(!S3Dest::parse("rec", &e).unwrap().path_style);
        let e = env(&[("AWS_ACCESS_KEY_ID", "AK")]);
        assert_eq!(S3Dest::parse("rec", &e).unwrap_err(), "AWS_SECRET_ACCESS_KEY is not set");
        assert!(S3Dest::parse("Bad_Bucket", &e).unwrap_err().contains("bucket name"));
    }

    #[test]
    fn path_style_hosts() {
        assert!(host_needs_path_style("http://localhost:9000"));
        assert!(host_needs_path_style("http://10.0.0.1"));
        assert!(host_needs_path_style("http://[::1]:3900/"));
        assert!(!host_needs_path_style("https://s3.eu-west-1.amazonaws.com"));
    }

    #[test]
    fn composite_checksum_matches_aws_definition() {
        // Two parts "a" and "b": base64(sha256(sha256("a") || sha256("b"))) + "-2".
        let a: [u8; 32] = digest(&SHA256, b"a").as_ref().try_into().unwrap();
        let b: [u8; 32] = digest(&SHA256, b"b").as_ref().try_into().unwrap();
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_eq!(composite_sha256(&[a, b]), format!("{}-2", b64(digest(&SHA256, &joined).as_ref())));
    }
}
