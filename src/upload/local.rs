//! The local-folder destination (`file:///abs/dir`): for development and the demo; refused in
//! HIPAA mode. Decrypts the spill into a temporary name next to the target, fsyncs, renames,
//! fsyncs the directory; only a renamed file of the expected size counts as confirmed.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use super::{DestinationFault, PutFailure, StoredObject, UploadError};
use crate::privacy::hex;
use crate::spill::{SpillKey, SpillReader};

#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn parse(path: &str) -> Result<Self, String> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err("a file:// destination needs an absolute path (file:///abs/dir)".into());
        }
        if path.contains('?') || path.contains('#') {
            return Err("a file:// destination takes no query or fragment".into());
        }
        Ok(Self { root: p.to_owned() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn put(&self, key: &str, content_type: &str, spill: &Path, spill_key: &SpillKey) -> Result<StoredObject, PutFailure> {
        let dest = self.root.display().to_string();
        let fail = |message: String, e: &std::io::Error| {
            PutFailure::from(UploadError::Destination { dest: dest.clone(), message: format!("{message}: {e}"), fault: DestinationFault::from_io(e.kind()) })
        };
        let target = self.root.join(key);
        let no_parent = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no parent folder");
        let parent = target.parent().ok_or_else(|| fail(format!("object key `{key}`"), &no_parent))?;
        std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create folder {}", parent.display()), &e))?;
        let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut rnd = [0u8; 8];
        SystemRandom::new().fill(&mut rnd).map_err(|_| fail("random".into(), &std::io::Error::other("system random generator failed")))?;
        let temp = parent.join(format!(".{file_name}.partial-{}", hex(&rnd)));

        let written = (|| -> Result<(u64, String), PutFailure> {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(|e| fail(format!("cannot create {}", temp.display()), &e))?;
            let mut reader = SpillReader::open(spill, spill_key).map_err(UploadError::from)?;
            let mut hash = Context::new(&SHA256);
            let mut size = 0u64;
            while let Some(chunk) = reader.next_chunk().map_err(UploadError::from)? {
                out.write_all(&chunk).map_err(|e| fail(format!("write {}", temp.display()), &e))?;
                hash.update(&chunk);
                size += chunk.len() as u64;
            }
            out.sync_all().map_err(|e| fail(format!("fsync {}", temp.display()), &e))?;
            Ok((size, hex(hash.finish().as_ref())))
        })();
        let (size, sha256) = match written {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&temp, &target) {
            let _ = std::fs::remove_file(&temp);
            return Err(fail(format!("cannot rename into {}", target.display()), &e));
        }
        let object = StoredObject {
            key: key.to_owned(),
            url: format!("file://{}", target.display()),
            size,
            sha256,
            content_type: content_type.to_owned(),
        };
        let landed = std::fs::metadata(&target).map(|m| m.len() == size).unwrap_or(false);
        if !landed {
            return Err(fail(format!("{}", target.display()), &std::io::Error::other("wrong size after rename")));
        }
        if let Err(e) = std::fs::File::open(parent).and_then(|d| d.sync_all()) {
            return Err(PutFailure {
                error: UploadError::Destination {
                    dest,
                    message: format!("fsync folder {}: {e}", parent.display()),
                    fault: DestinationFault::from_io(e.kind()),
                },
                complete: Some(object),
            });
        }
        Ok(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spill::SpillWriter;

    #[test]
    fn put_decrypts_renames_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("x.spill");
        let key = SpillKey::generate().unwrap();
        let mut w = SpillWriter::with_chunk_size(&spill, &key, 10).unwrap();
        w.write(b"hello, destination").unwrap();
        w.finish().unwrap();
        let dest = LocalDir::parse(dir.path().join("out").to_str().unwrap()).unwrap();
        let o = dest.put("a/b/c.txt", "text/plain", &spill, &key).unwrap();
        assert_eq!(std::fs::read(dir.path().join("out/a/b/c.txt")).unwrap(), b"hello, destination");
        assert_eq!(o.size, 18);
        assert_eq!(o.sha256, crate::privacy::sha256_hex(b"hello, destination"));
        // no temporary left behind
        assert_eq!(std::fs::read_dir(dir.path().join("out/a/b")).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_spill_leaves_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("x.spill");
        let key = SpillKey::generate().unwrap();
        let mut w = SpillWriter::with_chunk_size(&spill, &key, 4).unwrap();
        w.write(b"0123456789").unwrap();
        w.finish().unwrap();
        let mut bytes = std::fs::read(&spill).unwrap();
        let n = bytes.len();
        bytes.truncate(n - 3);
        std::fs::write(&spill, bytes).unwrap();
        let dest = LocalDir::parse(dir.path().join("out").to_str().unwrap()).unwrap();
        let err = dest.put("k.bin", "x", &spill, &key).unwrap_err();
        assert!(err.complete.is_none());
        assert!(err.error.to_string().contains("truncated"), "{}", err.error);
        assert_eq!(std::fs::read_dir(dir.path().join("out")).unwrap().count(), 0);
    }
}
