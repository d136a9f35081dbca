//! The encrypted spill: the only place recorded bytes touch the local disk.
//!
//! Format (normative description in `docs/spill-format.md`):
//!
//! ```text
//! header  = magic "VEILSPIL" | version u8 (=1) | flags u8 | reserved u16 (=0)
//!           | chunk_size u32 LE | nonce_prefix [7] | wrapped_key_len u16 LE | wrapped_key
//! record  = sealed_len u32 LE | AES-256-GCM(ciphertext ‖ tag)
//! nonce_i = nonce_prefix ‖ i as u32 BE ‖ last (0x00 | 0x01)
//! aad     = the complete header bytes
//! ```
//!
//! The writer seals a chunk whenever `chunk_size` plaintext bytes are buffered, and on
//! [`SpillWriter::finish`] seals the remainder as the final chunk (flag `0x01`, possibly empty).
//! Because the counter and the final flag are part of every nonce, a reader detects a flipped
//! bit, reordered chunks, a dropped chunk and a truncated tail.
//!
//! The data key is random per spill, lives only in memory ([`SpillKey`]) and is zeroized on
//! drop. Plaintext buffered before sealing is zeroized too.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

pub const MAGIC: &[u8; 8] = b"VEILSPIL";
pub const VERSION: u8 = 1;
/// Largest plaintext chunk a writer produces and a reader accepts.
pub const MAX_CHUNK: usize = 1 << 20;
const TAG_LEN: usize = 16;
const PREFIX_LEN: usize = 7;
const FIXED_HEADER_LEN: usize = 8 + 1 + 1 + 2 + 4 + PREFIX_LEN + 2;

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("spill {path}: not a veil spill file (bad magic)")]
    BadMagic { path: PathBuf },
    #[error("spill {path}: unsupported version {version}")]
    Version { path: PathBuf, version: u8 },
    #[error("spill {path}: malformed header ({what})")]
    Header { path: PathBuf, what: &'static str },
    #[error("spill {path}: chunk {index} failed authentication (corrupted, reordered or dropped chunk, or wrong key)")]
    Auth { path: PathBuf, index: u32 },
    #[error("spill {path}: truncated after {chunks} chunk(s): the final chunk is missing")]
    Truncated { path: PathBuf, chunks: u32 },
    #[error("spill {path}: data after the final chunk")]
    TrailingData { path: PathBuf },
    #[error("spill {path}: chunk {index} is larger than the chunk size")]
    Oversized { path: PathBuf, index: u32 },
    #[error("spill {path}: already finished")]
    Finished { path: PathBuf },
    #[error("spill: the system random generator failed")]
    Random,
}

/// A per-recording data key. Never printed; zeroized on drop.
#[derive(Clone)]
pub struct SpillKey(Zeroizing<[u8; 32]>);

impl SpillKey {
    pub fn generate() -> Result<Self, SpillError> {
        let mut k = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(&mut k[..]).map_err(|_| SpillError::Random)?;
        Ok(Self(k))
    }
    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0[..]).expect("32-byte key"))
    }
}

impl std::fmt::Debug for SpillKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpillKey(<redacted>)")
    }
}

fn nonce(prefix: &[u8; PREFIX_LEN], index: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..PREFIX_LEN].copy_from_slice(prefix);
    n[PREFIX_LEN..11].copy_from_slice(&index.to_be_bytes());
    n[11] = last as u8;
    Nonce::assume_unique_for_key(n)
}

fn encode_header(chunk_size: u32, prefix: &[u8; PREFIX_LEN]) -> Vec<u8> {
    let mut h = Vec::with_capacity(FIXED_HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.push(VERSION);
    h.push(0); // flags: bit 0 = wrapped key present (not produced by this version)
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&chunk_size.to_le_bytes());
    h.extend_from_slice(prefix);
    h.extend_from_slice(&0u16.to_le_bytes()); // wrapped key length
    h
}

/// Appends plaintext to an encrypted spill file.
pub struct SpillWriter {
    path: PathBuf,
    file: File,
    key: LessSafeKey,
    header: Vec<u8>,
    prefix: [u8; PREFIX_LEN],
    chunk_size: usize,
    buf: Zeroizing<Vec<u8>>,
    index: u32,
    plaintext_len: u64,
    finished: bool,
}

impl SpillWriter {
    /// Creates `path` (must not exist; mode 0600) and writes the header.
    pub fn create(path: &Path, key: &SpillKey) -> Result<Self, SpillError> {
        Self::with_chunk_size(path, key, MAX_CHUNK)
    }

    pub fn with_chunk_size(path: &Path, key: &SpillKey, chunk_size: usize) -> Result<Self, SpillError> {
        let chunk_size = chunk_size.clamp(1, MAX_CHUNK);
        let io_err = |source| SpillError::Io { path: path.to_owned(), cause: source };
        let mut prefix = [0u8; PREFIX_LEN];
        SystemRandom::new().fill(&mut prefix).map_err(|_| SpillError::Random)?;
        let header = encode_header(chunk_size as u32, &prefix);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err)?;
        // Held for the writer's life: tells `remove_stale` this spill belongs to a live run.
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        file.write_all(&header).map_err(io_err)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            key: key.aead(),
            header,
            prefix,
            chunk_size,
            buf: Zeroizing::new(Vec::with_capacity(chunk_size)),
            index: 0,
            plaintext_len: 0,
            finished: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Plaintext bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.plaintext_len
    }

    pub fn is_empty(&self) -> bool {
        self.plaintext_len == 0
    }

    pub fn write(&mut self, mut data: &[u8]) -> Result<(), SpillError> {
        if self.finished {
            return Err(SpillError::Finished { path: self.path.clone() });
        }
        self.plaintext_len += data.len() as u64;
        while !data.is_empty() {
            let room = self.chunk_size - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk_size {
                self.seal(false)?;
            }
        }
        Ok(())
    }

    /// Plaintext bytes buffered and not yet sealed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Seals what is buffered as a (non-final) chunk, so that it is on disk and readable by
    /// an uploader following the file. A no-op when nothing is buffered.
    pub fn flush(&mut self) -> Result<(), SpillError> {
        if self.finished {
            return Err(SpillError::Finished { path: self.path.clone() });
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.seal(false)
    }

    /// Seals the buffered remainder as the final chunk and syncs the file.
    pub fn finish(&mut self) -> Result<(), SpillError> {
        if self.finished {
            return Ok(());
        }
        self.seal(true)?;
        self.finished = true;
        self.file.sync_all().map_err(|source| SpillError::Io { path: self.path.clone(), cause: source })
    }

    fn seal(&mut self, last: bool) -> Result<(), SpillError> {
        let mut sealed = std::mem::take(&mut *self.buf);
        let n = nonce(&self.prefix, self.index, last);
        self.key
            .seal_in_place_append_tag(n, Aad::from(&self.header[..]), &mut sealed)
            .map_err(|_| SpillError::Auth { path: self.path.clone(), index: self.index })?;
        let io_err = |source| SpillError::Io { path: self.path.clone(), cause: source };
        self.file.write_all(&(sealed.len() as u32).to_le_bytes()).map_err(io_err)?;
        self.file.write_all(&sealed).map_err(io_err)?;
        // `sealed` is ciphertext now; reuse its allocation for the next chunk after wiping.
        sealed.zeroize();
        sealed.clear();
        *self.buf = sealed;
        self.index = self.index.checked_add(1).ok_or(SpillError::Header {
            path: self.path.clone(),
            what: "chunk counter overflow",
        })?;
        Ok(())
    }
}

impl Drop for SpillWriter {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

/// Reads and authenticates a finished spill file chunk by chunk.
pub struct SpillReader {
    path: PathBuf,
    file: BufReader<File>,
    key: LessSafeKey,
    header: Vec<u8>,
    prefix: [u8; PREFIX_LEN],
    chunk_size: usize,
    index: u32,
    done: bool,
}

impl SpillReader {
    pub fn open(path: &Path, key: &SpillKey) -> Result<Self, SpillError> {
        let file = File::open(path).map_err(|source| SpillError::Io { path: path.to_owned(), cause: source })?;
        Self::from_file(path, file, key)
    }

    fn from_file(path: &Path, file: File, key: &SpillKey) -> Result<Self, SpillError> {
        let mut file = BufReader::new(file);
        let mut header = vec![0u8; FIXED_HEADER_LEN];
        read_full(&mut file, &mut header)
            .map_err(|source| SpillError::Io { path: path.to_owned(), cause: source })
            .and_then(|n| {
                if n < 8 || &header[..8] != MAGIC {
                    Err(SpillError::BadMagic { path: path.to_owned() })
                } else if n < FIXED_HEADER_LEN {
                    Err(SpillError::Header { path: path.to_owned(), what: "header is truncated" })
                } else {
                    Ok(())
                }
            })?;
        if header[8] != VERSION {
            return Err(SpillError::Version { path: path.to_owned(), version: header[8] });
        }
        let chunk_size = u32::from_le_bytes(header[12..16].try_into().unwrap()) as usize;
        if chunk_size == 0 || chunk_size > MAX_CHUNK {
            return Err(SpillError::Header { path: path.to_owned(), what: "chunk size out of range" });
        }
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&header[16..16 + PREFIX_LEN]);
        let wrapped = u16::from_le_bytes(header[FIXED_HEADER_LEN - 2..].try_into().unwrap()) as usize;
        if wrapped > 0 {
            let mut w = vec![0u8; wrapped];
            let n = read_full(&mut file, &mut w).map_err(|source| SpillError::Io { path: path.to_owned(), cause: source })?;
            if n < wrapped {
                return Err(SpillError::Header { path: path.to_owned(), what: "wrapped key is truncated" });
            }
            header.extend_from_slice(&w);
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            key: key.aead(),
            header,
            prefix,
            chunk_size,
            index: 0,
            done: false,
        })
    }

    /// Returns the next authenticated plaintext chunk, or `None` after the final chunk.
    pub fn next_chunk(&mut self) -> Result<Option<Zeroizing<Vec<u8>>>, SpillError> {
        if self.done {
            return Ok(None);
        }
        let io_err = |path: &Path, source| SpillError::Io { path: path.to_owned(), cause: source };
        let mut len = [0u8; 4];
        let n = read_full(&mut self.file, &mut len).map_err(|e| io_err(&self.path, e))?;
        if n < 4 {
            return Err(SpillError::Truncated { path: self.path.clone(), chunks: self.index });
        }
        let sealed_len = u32::from_le_bytes(len) as usize;
        if sealed_len < TAG_LEN || sealed_len > self.chunk_size + TAG_LEN {
            return Err(SpillError::Oversized { path: self.path.clone(), index: self.index });
        }
        let mut sealed = Zeroizing::new(vec![0u8; sealed_len]);
        let n = read_full(&mut self.file, &mut sealed).map_err(|e| io_err(&self.path, e))?;
        if n < sealed_len {
            return Err(SpillError::Truncated { path: self.path.clone(), chunks: self.index });
        }
        // Try as a middle chunk first, then as the final one: the flag is part of the nonce.
        let mut last = false;
        let mut plain_len = None;
        for candidate in [false, true] {
            let mut attempt = sealed.clone();
            if let Ok(p) = self.key.open_in_place(
                nonce(&self.prefix, self.index, candidate),
                Aad::from(&self.header[..]),
                &mut attempt,
            ) {
                plain_len = Some(p.len());
                last = candidate;
                sealed = attempt;
                break;
            }
        }
        let Some(plain_len) = plain_len else {
            return Err(SpillError::Auth { path: self.path.clone(), index: self.index });
        };
        sealed.truncate(plain_len);
        self.index += 1;
        if last {
            self.done = true;
            let mut probe = [0u8; 1];
            if read_full(&mut self.file, &mut probe).map_err(|e| io_err(&self.path, e))? > 0 {
                return Err(SpillError::TrailingData { path: self.path.clone() });
            }
        }
        Ok(Some(sealed))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Overwrites a spill file with zeros, syncs it and removes it. Spill files hold only
/// ciphertext; shredding is defence in depth for disks without encryption at rest.
pub fn shred(path: &Path) -> io::Result<()> {
    if let Ok(mut f) = OpenOptions::new().write(true).open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let zeros = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            if f.write_all(&zeros[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = f.sync_all();
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Shreds `*.spill` files in `dir` that no live writer holds: leftovers of a crashed run,
/// unreadable without the data key that died with it. Returns how many were removed.
pub fn remove_stale(dir: &Path) -> usize {
    use std::os::fd::AsRawFd;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "spill") {
            continue;
        }
        let Ok(f) = File::open(&p) else { continue };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 && shred(&p).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_file(data: &[u8], chunk: usize) -> (tempfile::TempDir, PathBuf, SpillKey) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.spill");
        let key = SpillKey::generate().unwrap();
        let mut w = SpillWriter::with_chunk_size(&path, &key, chunk).unwrap();
        for (i, part) in data.chunks(7).enumerate() {
            w.write(part).unwrap();
            if i % 5 == 4 {
                w.flush().unwrap(); // partial chunks in the middle are valid
            }
        }
        w.finish().unwrap();
        (dir, path, key)
    }

    fn read_all(path: &Path, key: &SpillKey) -> Result<Vec<u8>, SpillError> {
        let mut r = SpillReader::open(path, key)?;
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk()? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    /// Byte ranges of each record (length prefix included).
    fn records(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut at = FIXED_HEADER_LEN;
        let mut out = Vec::new();
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push(at..at + 4 + len);
            at += 4 + len;
        }
        out
    }

    #[test]
    fn round_trip_various_sizes() {
        for (len, chunk) in [(0usize, 16usize), (1, 16), (16, 16), (17, 16), (1000, 64), (3 << 20, MAX_CHUNK)] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (_d, path, key) = roundtrip_file(&data, chunk);
            assert_eq!(read_all(&path, &key).unwrap(), data, "len {len} chunk {chunk}");
        }
    }

    #[test]
    fn ciphertext_hides_plaintext() {
        let data = b"ftypisom moov mdat SECRET CHAT TEXT".repeat(100);
        let (_d, path, _key) = roundtrip_file(&data, 256);
        let bytes = std::fs::read(&path).unwrap();
        for needle in [&b"moov"[..], b"ftyp", b"SECRET"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }

    #[test]
    fn wrong_key_is_rejected() {
        let (_d, path, _key) = roundtrip_file(b"hello world", 16);
        let other = SpillKey::generate().unwrap();
        assert!(matches!(read_all(&path, &other), Err(SpillError::Auth { index: 0, .. })));
    }

    #[test]
    fn flipped_bit_is_rejected() {
        let data = vec![7u8; 100];
        let (_d, path, key) = roundtrip_file(&data, 32);
        let mut bytes = std::fs::read(&path).unwrap();
        let r = records(&bytes)[1].clone();
        bytes[r.start + 10] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_all(&path, &key).unwrap_err();
        assert!(matches!(err, SpillError::Auth { index: 1, .. }), "{err}");
        assert!(err.to_string().contains("chunk 1 failed authentication"));
    }

    #[test]
    fn flipped_header_bit_is_rejected() {
        let (_d, path, key) = roundtrip_file(&[1u8; 40], 32);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[18] ^= 1; // inside the nonce prefix, covered as AAD and nonce
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read_all(&path, &key), Err(SpillError::Auth { index: 0, .. })));
    }

    #[test]
    fn reordered_chunks_are_rejected() {
        let data: Vec<u8> = (0..100u8).collect();
        let (_d, path, key) = roundtrip_file(&data, 32);
        let bytes = std::fs::read(&path).unwrap();
        let rs = records(&bytes);
        let mut out = bytes[..FIXED_HEADER_LEN].to_vec();
        out.extend_from_slice(&bytes[rs[1].clone()]);
        out.extend_from_slice(&bytes[rs[0].clone()]);
        for r in &rs[2..] {
            out.extend_from_slice(&bytes[r.clone()]);
        }
        std::fs::write(&path, &out).unwrap();
        assert!(matches!(read_all(&path, &key), Err(SpillError::Auth { index: 0, .. })));
    }

    #[test]
    fn dropped_chunk_is_rejected() {
        let data: Vec<u8> = (0..100u8).collect();
        let (_d, path, key) = roundtrip_file(&data, 32);
        let bytes = std::fs::read(&path).unwrap();
        let rs = records(&bytes);
        let mut out = bytes[..rs[1].start].to_vec();
        out.extend_from_slice(&bytes[rs[2].start..]);
        std::fs::write(&path, &out).unwrap();
        assert!(matches!(read_all(&path, &key), Err(SpillError::Auth { index: 1, .. })));
    }

    #[test]
    fn truncated_tail_is_rejected() {
        let data: Vec<u8> = (0..100u8).collect();
        let (_d, path, key) = roundtrip_file(&data, 32);
        let bytes = std::fs::read(&path).unwrap();
        let rs = records(&bytes);
        // Cut at a record boundary (final chunk missing) and in the middle of a record.
        for cut in [rs[rs.len() - 1].start, rs[1].start + 9] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = read_all(&path, &key).unwrap_err();
            assert!(matches!(err, SpillError::Truncated { .. }), "{err}");
            assert!(err.to_string().contains("final chunk is missing"));
        }
    }

    #[test]
    fn trailing_data_and_bad_magic_are_rejected() {
        let (_d, path, key) = roundtrip_file(&[5u8; 10], 32);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(0);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read_all(&path, &key), Err(SpillError::TrailingData { .. })));
        bytes[0] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read_all(&path, &key), Err(SpillError::BadMagic { .. })));
    }

    #[test]
    fn key_debug_is_redacted() {
        let k = SpillKey::generate().unwrap();
        assert_eq!(format!("{k:?}"), "SpillKey(<redacted>)");
    }

    #[test]
    fn stale_spills_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = SpillKey::generate().unwrap();
        let live = SpillWriter::create(&dir.path().join("live.spill"), &key).unwrap();
        {
            let mut dead = SpillWriter::create(&dir.path().join("dead.spill"), &key).unwrap();
            dead.write(b"x").unwrap();
        }
        assert_eq!(remove_stale(dir.path()), 1);
        assert!(live.path().exists());
        assert!(!dir.path().join("dead.spill").exists());
    }

    #[test]
    fn shred_removes_file() {
        let (_d, path, _key) = roundtrip_file(&[5u8; 10], 32);
        shred(&path).unwrap();
        assert!(!path.exists());
        shred(&path).unwrap();
    }
}
