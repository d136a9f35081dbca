//! Azure Blob Storage with a SAS URL (azure_storage_blob), write calls only.
//!
//! `https://ACCOUNT.blob.core.windows.net/CONTAINER/prefix?SAS`, or an emulator's path-style
//! `http://127.0.0.1:10000/ACCOUNT/CONTAINER/prefix?SAS`. Each part is a Put Block with the
//! part's Content-MD5, which the service checks; a block counts as confirmed when the response
//! echoes that MD5. Completion is a Put Block List naming the blocks in order (itself sent with
//! its Content-MD5); a 201 with an ETag confirms it. The SAS needs only create and write
//! (`sp=cw`). The SAS is a secret: it redacts itself and never appears in errors or logs.

use std::sync::Arc;

use azure_core::http::{ClientOptions, RequestContent, RetryOptions, Url};
use azure_storage_blob::models::{
    BlockBlobClientCommitBlockListOptions, BlockBlobClientCommitBlockListResultHeaders, BlockBlobClientStageBlockOptions,
    BlockBlobClientStageBlockResultHeaders, BlockLookupList,
};
use azure_storage_blob::{BlockBlobClient, BlockBlobClientOptions};
use md5::{Digest, Md5};

use super::{DestinationFault, ObjectUpload, StoredObject, UploadError};
use crate::privacy::Redacted;

#[derive(Debug, Clone)]
pub struct AzureDest {
    /// `scheme://host[:port]` plus `/ACCOUNT` for path-style (emulator) URLs.
    base: String,
    pub container: String,
    pub prefix: String,
    sas: Redacted<String>,
    pub part_size: usize,
}

/// Azure allows up to 4000 MiB per block; parts follow the S3 default.
pub const DEFAULT_PART: usize = 8 << 20;
/// Blocks may differ in size: the first is small so that a refused SAS is known within
/// seconds of the start, not after a whole part.
pub const FIRST_PART: usize = 256 << 10;

impl AzureDest {
    /// Parses an Azure Blob URL with a SAS query. Errors never quote the query.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (path_part, query) = url.split_once('?').ok_or("an Azure destination needs a SAS token in its query (…?sv=…&sig=…)")?;
        if !query.split('&').any(|kv| kv.starts_with("sig=")) {
            return Err("the SAS token has no signature (sig=)".into());
        }
        let parsed = Url::parse(path_part).map_err(|e| format!("not a URL: {e}"))?;
        let host = parsed.host_str().ok_or("no host")?.to_owned();
        let mut segs: Vec<&str> = parsed.path().trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let origin = match parsed.port() {
            Some(p) => format!("{}://{host}:{p}", parsed.scheme()),
            None => format!("{}://{host}", parsed.scheme()),
        };
        let base = if host.ends_with(".blob.core.windows.net") {
            origin
        } else {
            // Emulators address the account in the path.
            if segs.is_empty() {
                return Err("expected http://HOST:PORT/ACCOUNT/CONTAINER/prefix for an emulator".into());
            }
            format!("{origin}/{}", segs.remove(0))
        };
        if segs.is_empty() {
            return Err("the URL names no container".into());
        }
        let container = segs.remove(0).to_owned();
        if !(3..=63).contains(&container.len()) || !container.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
            return Err("the container name must be 3-63 characters of a-z, 0-9 and '-'".into());
        }
        Ok(Self { base, container, prefix: segs.join("/"), sas: Redacted::new(query.to_owned()), part_size: DEFAULT_PART })
    }

    pub fn describe(&self) -> String {
        let c = format!("{}/{}", self.base, self.container);
        if self.prefix.is_empty() { c } else { format!("{c}/{}", self.prefix) }
    }

    /// The blob's URL with the SAS (never shown).
    pub(crate) fn blob_url(&self, key: &str) -> Result<Url, UploadError> {
        let mut u = Url::parse(&format!("{}/{}", self.base, self.container)).map_err(|_| self.fail("the blob URL is invalid", DestinationFault::Rejected))?;
        u.path_segments_mut().map_err(|_| self.fail("the blob URL is invalid", DestinationFault::Rejected))?.extend(key.split('/'));
        u.set_query(Some(self.sas.expose()));
        Ok(u)
    }

    pub(crate) fn container_url(&self) -> Result<Url, UploadError> {
        let mut u = Url::parse(&format!("{}/{}", self.base, self.container)).map_err(|_| self.fail("the container URL is invalid", DestinationFault::Rejected))?;
        u.set_query(Some(self.sas.expose()));
        Ok(u)
    }

    pub(crate) fn options() -> ClientOptions {
        // The streaming driver retries (and resumes); the SDK must not retry on its own.
        ClientOptions { retry: RetryOptions::none(), ..Default::default() }
    }

    pub fn begin(&self, key: &str, content_type: &str) -> Result<AzureUpload, UploadError> {
        let url = self.blob_url(key)?;
        let client = BlockBlobClient::new(url, None, Some(BlockBlobClientOptions { client_options: Self::options(), ..Default::default() }))
            // The SDK's message would quote the URL, SAS included.
            .map_err(|_| self.fail("cannot build the blob client", DestinationFault::Rejected))?;
        let rt = super::s3::runtime(&self.describe())?;
        Ok(AzureUpload { dest: self.clone(), rt, client: Arc::new(client), key: key.to_owned(), content_type: content_type.to_owned(), blocks: Vec::new() })
    }

    fn fail(&self, message: &str, fault: DestinationFault) -> UploadError {
        UploadError::Destination { dest: self.describe(), message: message.to_owned(), fault }
    }

    /// Maps an SDK error without ever using its text (it may quote the SAS URL).
    pub(crate) fn error(&self, op: &str, key: &str, e: &azure_core::Error) -> UploadError {
        use azure_core::error::ErrorKind;
        let (fault, detail) = match e.kind() {
            ErrorKind::HttpResponse { status, error_code, .. } => {
                let s = u16::from(*status);
                let code = error_code.as_deref().unwrap_or("");
                let fault = match (s, code) {
                    // Azurite reports a bad SAS signature as AuthorizationFailure.
                    (_, "AuthenticationFailed" | "InvalidAuthenticationInfo" | "AuthorizationFailure") => DestinationFault::Credentials,
                    (401, _) => DestinationFault::Credentials,
                    (403, _) => DestinationFault::Permission,
                    (404, "ContainerNotFound") => DestinationFault::Missing,
                    (408 | 429 | 500..=599, _) | (_, "Md5Mismatch" | "OperationTimedOut" | "ServerBusy") => DestinationFault::Unreachable,
                    _ => DestinationFault::Rejected,
                };
                // Only well-formed codes are shown: letters and digits.
                let code: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).take(60).collect();
                (fault, if code.is_empty() { format!("failed (HTTP {s})") } else { format!("failed (HTTP {s} {code})") })
            }
            ErrorKind::Connection | ErrorKind::Io => (DestinationFault::Unreachable, "failed (cannot reach the endpoint)".to_owned()),
            _ => (DestinationFault::Unreachable, "failed".to_owned()),
        };
        let hint = match fault {
            DestinationFault::Permission => format!(": the SAS needs create and write (sp=cw) on {}/{key}", self.container),
            DestinationFault::Missing => format!(": container `{}` does not exist", self.container),
            DestinationFault::Credentials => ": the SAS token was refused (expired, wrongly signed, or not valid from this network?)".to_owned(),
            _ => String::new(),
        };
        UploadError::Destination { dest: self.describe(), message: format!("{op} {detail}{hint}"), fault }
    }
}

pub struct AzureUpload {
    dest: AzureDest,
    rt: tokio::runtime::Runtime,
    client: Arc<BlockBlobClient>,
    key: String,
    content_type: String,
    /// Block ids in part order.
    blocks: Vec<Vec<u8>>,
}

/// Fixed-width ids (Azure requires equal lengths within a blob).
fn block_id(number: u32) -> Vec<u8> {
    format!("veil-{number:08}").into_bytes()
}

impl ObjectUpload for AzureUpload {
    fn put_part(&mut self, number: u32, data: &[u8]) -> Result<(), UploadError> {
        let md5 = Md5::digest(data).to_vec();
        let id = block_id(number);
        let opts = BlockBlobClientStageBlockOptions { transactional_content_md5: Some(md5.clone()), ..Default::default() };
        let body: RequestContent<azure_core::Bytes, azure_core::http::NoFormat> = azure_core::Bytes::copy_from_slice(data).into();
        let resp = self
            .rt
            .block_on(self.client.stage_block(&id, data.len() as u64, body, Some(opts)))
            .map_err(|e| self.dest.error("Put Block", &self.key, &e))?;
        match resp.content_md5() {
            Ok(Some(echo)) if echo == md5 => {}
            Ok(None) => {}
            _ => return Err(self.dest.fail(&format!("Put Block {number}: the service's MD5 does not match the block sent"), DestinationFault::Unreachable)),
        }
        let i = number as usize - 1;
        self.blocks.truncate(i);
        self.blocks.push(id);
        Ok(())
    }

    fn complete(&mut self, size: u64, sha256: &str) -> Result<StoredObject, UploadError> {
        let list = BlockLookupList { latest: Some(self.blocks.clone()), ..Default::default() };
        let content: RequestContent<BlockLookupList, _> =
            list.try_into().map_err(|_| self.dest.fail("cannot encode the block list", DestinationFault::Rejected))?;
        let opts = BlockBlobClientCommitBlockListOptions { blob_content_type: Some(self.content_type.clone()), ..Default::default() };
        let resp = self
            .rt
            .block_on(self.client.commit_block_list(content, Some(opts)))
            .map_err(|e| self.dest.error("Put Block List", &self.key, &e))?;
        if u16::from(resp.status()) != 201 || !matches!(resp.etag(), Ok(Some(_))) {
            return Err(self.dest.fail("Put Block List: the service did not confirm the commit", DestinationFault::Unreachable));
        }
        Ok(StoredObject::confirmed(&self.key, format!("{}/{}", self.dest.base_with_container(), self.key), size, sha256, &self.content_type, format!("azure block list of {} block(s) committed, each block's MD5 echoed", self.blocks.len())))
    }

    fn abort(&mut self) {
        // Uncommitted blocks cannot be deleted with write-only rights; the service discards
        // them after a week. Nothing was committed, so no blob exists.
    }
}

impl AzureDest {
    fn base_with_container(&self) -> String {
        format!("{}/{}", self.base, self.container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_service_and_emulator_urls_without_showing_the_sas() {
        let d = AzureDest::parse("https://acct.blob.core.windows.net/rec/a/b?sv=2024&sp=cw&sig=SECRETSIG").unwrap();
        assert_eq!((d.container.as_str(), d.prefix.as_str()), ("rec", "a/b"));
        assert_eq!(d.describe(), "https://acct.blob.core.windows.net/rec/a/b");
        assert!(!format!("{d:?}").contains("SECRETSIG"));
        let u = d.blob_url("a/b/x y.mp4").unwrap();
        assert_eq!(u.path(), "/rec/a/b/x%20y.mp4");
        assert!(u.query().unwrap().contains("sig=SECRETSIG"));
        let e = AzureDest::parse("http://127.0.0.1:10000/devstoreaccount1/rec?sv=1&sig=S").unwrap();
        assert_eq!(e.describe(), "http://127.0.0.1:10000/devstoreaccount1/rec");
        for bad in ["https://acct.blob.core.windows.net/rec", "https://acct.blob.core.windows.net/rec?sv=1", "https://acct.blob.core.windows.net/?sig=x", "https://acct.blob.core.windows.net/Bad_Name?sig=SECRETSIG"] {
            let err = AzureDest::parse(bad).unwrap_err();
            assert!(!err.contains("SECRETSIG"), "{err}");
        }
    }
}
