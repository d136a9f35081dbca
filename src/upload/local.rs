//! The local-folder destination (`file:///abs/dir`): for development and the demo; refused in
//! HIPAA mode. Parts are written into a temporary name next to the target and fsynced (a
//! part is confirmed once it is on disk); completion renames and fsyncs the folder; only a
//! renamed file of the expected size counts as confirmed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use super::{DestinationFault, ObjectUpload, StoredObject, UploadError};
use crate::privacy::hex;

#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
    pub part_size: usize,
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
        Ok(Self { root: p.to_owned(), part_size: 8 << 20 })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn fail(&self, message: String, e: &std::io::Error) -> UploadError {
        UploadError::Destination { dest: self.root.display().to_string(), message: format!("{message}: {e}"), fault: DestinationFault::from_io(e.kind()) }
    }

    pub fn begin(&self, key: &str, content_type: &str) -> Result<LocalUpload, UploadError> {
        let target = self.root.join(key);
        let no_parent = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no parent folder");
        let parent = target.parent().ok_or_else(|| self.fail(format!("object key `{key}`"), &no_parent))?.to_owned();
        std::fs::create_dir_all(&parent).map_err(|e| self.fail(format!("cannot create folder {}", parent.display()), &e))?;
        let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut rnd = [0u8; 8];
        SystemRandom::new().fill(&mut rnd).map_err(|_| self.fail("random".into(), &std::io::Error::other("system random generator failed")))?;
        let temp = parent.join(format!(".{file_name}.partial-{}", hex(&rnd)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.fail(format!("cannot create {}", temp.display()), &e))?;
        Ok(LocalUpload { dir: self.clone(), key: key.to_owned(), content_type: content_type.to_owned(), target, temp, file, starts: Vec::new(), done: false })
    }
}

pub struct LocalUpload {
    dir: LocalDir,
    key: String,
    content_type: String,
    target: PathBuf,
    temp: PathBuf,
    file: File,
    /// Offset where each part begins, plus the end of the last one.
    starts: Vec<u64>,
    done: bool,
}

impl ObjectUpload for LocalUpload {
    fn put_part(&mut self, number: u32, data: &[u8]) -> Result<(), UploadError> {
        let i = number.checked_sub(1).map(|i| i as usize).filter(|&i| i < self.starts.len().max(1)).ok_or_else(|| {
            self.dir.fail(format!("part {number}"), &std::io::Error::new(std::io::ErrorKind::InvalidInput, "parts must be sent in order"))
        })?;
        let start = self.starts.get(i).copied().unwrap_or(0);
        let wr = |e: std::io::Error| self.dir.fail(format!("write {}", self.temp.display()), &e);
        self.file.write_all_at(data, start).map_err(wr)?;
        self.file.set_len(start + data.len() as u64).map_err(wr)?;
        self.file.sync_data().map_err(wr)?;
        self.starts.truncate(i + 1);
        self.starts.resize(i + 1, 0);
        self.starts[i] = start;
        self.starts.push(start + data.len() as u64);
        Ok(())
    }

    fn complete(&mut self, size: u64, sha256: &str) -> Result<StoredObject, UploadError> {
        let written = self.starts.last().copied().unwrap_or(0);
        if written != size {
            return Err(self.dir.fail(format!("{}", self.temp.display()), &std::io::Error::other(format!("holds {written} bytes, expected {size}"))));
        }
        self.file.sync_all().map_err(|e| self.dir.fail(format!("fsync {}", self.temp.display()), &e))?;
        std::fs::rename(&self.temp, &self.target).map_err(|e| self.dir.fail(format!("cannot rename into {}", self.target.display()), &e))?;
        self.done = true;
        let landed = std::fs::metadata(&self.target).map(|m| m.len() == size).unwrap_or(false);
        if !landed {
            return Err(self.dir.fail(format!("{}", self.target.display()), &std::io::Error::other("wrong size after rename")));
        }
        if let Some(parent) = self.target.parent() {
            File::open(parent).and_then(|d| d.sync_all()).map_err(|e| self.dir.fail(format!("fsync folder {}", parent.display()), &e))?;
        }
        Ok(StoredObject::confirmed(&self.key, format!("file://{}", self.target.display()), size, sha256, &self.content_type, "fsync, rename and size"))
    }

    fn abort(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
            self.done = true;
        }
    }
}

impl Drop for LocalUpload {
    /// An upload dropped before completion leaves no partial file behind.
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_land_in_order_and_rename_on_complete() {
        let dir = tempfile::tempdir().unwrap();
        let dest = LocalDir::parse(dir.path().join("out").to_str().unwrap()).unwrap();
        let mut up = dest.begin("a/b/c.txt", "text/plain").unwrap();
        up.put_part(1, b"hello, ").unwrap();
        up.put_part(2, b"XXXXXXXXXXXXXXXXXXXXXXXXXX").unwrap();
        up.put_part(2, b"destination").unwrap(); // a retried part replaces the first attempt
        assert!(up.put_part(4, b"gap").is_err());
        let sum = crate::privacy::sha256_hex(b"hello, destination");
        let o = up.complete(18, &sum).unwrap();
        assert_eq!(std::fs::read(dir.path().join("out/a/b/c.txt")).unwrap(), b"hello, destination");
        assert_eq!(o.size, 18);
        // no temporary left behind
        assert_eq!(std::fs::read_dir(dir.path().join("out/a/b")).unwrap().count(), 1);
    }

    #[test]
    fn wrong_size_or_abort_leaves_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let dest = LocalDir::parse(dir.path().join("out").to_str().unwrap()).unwrap();
        let mut up = dest.begin("k.bin", "x").unwrap();
        up.put_part(1, b"0123").unwrap();
        assert!(up.complete(10, "00").unwrap_err().to_string().contains("expected 10"));
        drop(up);
        assert_eq!(std::fs::read_dir(dir.path().join("out")).unwrap().count(), 0);
    }
}
