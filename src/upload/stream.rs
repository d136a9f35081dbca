//! The streaming driver: recorded bytes → encrypted spill segments → parts at the destination.
//!
//! The writer side ([`ObjectStream::write`]) runs in the compositor's sink. It fills spill
//! segments of exactly one part each (the last may be shorter) and hands every finished
//! segment to an uploader thread. That thread starts the upload at once (the stream is
//! created at the first bytes), decrypts each segment into memory, sends it as a part,
//! retries transient failures with exponential backoff and jitter (resuming at the same
//! part), and shreds the segment only once the destination has confirmed the part. So the
//! spill on disk holds only what is not yet confirmed, and memory holds at most one part.
//!
//! Failures:
//! - permanent (denied, bad credentials, bucket missing, rejected): the upload stops, the
//!   writer is told on its next write, and the encrypted segments are kept;
//! - transient for longer than the retention: the segments are shredded and the error says so;
//! - cancel: the upload is aborted at the destination and the segments are shredded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};
use zeroize::Zeroizing;

use super::{ObjectUpload, StoredObject, StreamStats, UploadError};
use crate::privacy::hex;
use crate::spill::{self, SpillError, SpillKey, SpillReader, SpillWriter};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// How long the destination may fail (transiently) before the recording is given up.
    pub retention: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { retention: Duration::from_secs(3600), first_backoff: Duration::from_millis(500), max_backoff: Duration::from_secs(30) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{cause} (the encrypted spill was kept)")]
    Failed { cause: UploadError },
    #[error("{cause}; still failing after the {retention_s} s retention, so the encrypted spill was shredded")]
    GaveUp { cause: UploadError, retention_s: u64 },
    #[error("cancelled: the partial upload was aborted and the spill shredded")]
    Cancelled,
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error("the upload stopped (see the upload error)")]
    Stopped,
    #[error("the uploader thread panicked")]
    Panicked,
}

impl StreamError {
    pub fn upload_error(&self) -> Option<&UploadError> {
        match self {
            StreamError::Failed { cause } | StreamError::GaveUp { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

/// Starts an upload (retried like a part).
pub type Begin = Box<dyn FnMut() -> Result<Box<dyn ObjectUpload>, UploadError> + Send>;

enum Msg {
    Part { number: u32, path: PathBuf },
    Finish,
    Abort,
}

struct Shared {
    stopped: AtomicBool,
    cancel: Arc<AtomicBool>,
    /// Segment files written and not yet confirmed.
    pending: Mutex<Vec<PathBuf>>,
    /// Parts uploaded so far.
    uploaded: AtomicU32,
    /// When the writer finished, and how many parts were uploaded by then.
    ended: Mutex<Option<(Instant, u32)>>,
}

/// One object streaming to its destination.
pub struct ObjectStream {
    dir: PathBuf,
    spill_key: SpillKey,
    part_size: usize,
    first_part: usize,
    current: Option<SpillWriter>,
    current_len: usize,
    parts: u32,
    tx: Sender<Msg>,
    worker: Option<JoinHandle<Result<StoredObject, StreamError>>>,
    shared: Arc<Shared>,
}

impl ObjectStream {
    /// Starts the uploader thread, which begins the upload right away.
    /// `first_part` may be smaller than `part_size` where the destination allows it.
    pub fn start(begin: Begin, (first_part, part_size): (usize, usize), dir: &Path, spill_key: &SpillKey, policy: RetryPolicy, cancel: Arc<AtomicBool>) -> Self {
        let shared = Arc::new(Shared { stopped: AtomicBool::new(false), cancel, pending: Mutex::new(Vec::new()), uploaded: AtomicU32::new(0), ended: Mutex::new(None) });
        let (tx, rx) = channel();
        let worker = {
            let shared = shared.clone();
            let key = spill_key.clone();
            std::thread::Builder::new()
                .name("veil-upload".into())
                .spawn(move || {
                    let r = upload(begin, rx, &key, policy, &shared);
                    if r.is_err() {
                        shared.stopped.store(true, Ordering::SeqCst);
                    }
                    r
                })
                .expect("spawn uploader thread")
        };
        Self { dir: dir.to_owned(), spill_key: spill_key.clone(), part_size: part_size.max(1), first_part: first_part.clamp(1, part_size.max(1)), current: None, current_len: 0, parts: 0, tx, worker: Some(worker), shared }
    }

    /// True once the upload has failed or was cancelled: further writes are refused.
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    pub fn write(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        if self.stopped() {
            return Err(StreamError::Stopped);
        }
        while !data.is_empty() {
            if self.current.is_none() {
                self.open_segment()?;
            }
            let size = if self.parts == 0 { self.first_part } else { self.part_size };
            let take = (size - self.current_len).min(data.len());
            if let Some(w) = &mut self.current {
                w.write(&data[..take])?;
            }
            self.current_len += take;
            data = &data[take..];
            if self.current_len == size {
                self.seal_segment()?;
            }
        }
        Ok(())
    }

    /// Plaintext bytes not yet sealed into the spill.
    pub fn buffered(&self) -> usize {
        self.current.as_ref().map_or(0, |w| w.buffered())
    }

    /// Seals buffered bytes into the current segment (ciphertext on disk, not yet a part).
    pub fn flush(&mut self) -> Result<(), StreamError> {
        if let Some(w) = &mut self.current {
            w.flush()?;
        }
        Ok(())
    }

    /// Sends the last part, completes the upload and waits for its confirmation.
    pub fn finish(mut self) -> Result<StoredObject, StreamError> {
        let sent = (|| {
            if self.current.is_some() || self.parts == 0 {
                if self.current.is_none() {
                    self.open_segment()?; // an empty object is one empty part
                }
                self.seal_segment()?;
            }
            Ok::<_, StreamError>(())
        })();
        if sent.is_ok() {
            if let Ok(mut e) = self.shared.ended.lock() {
                *e = Some((Instant::now(), self.shared.uploaded.load(Ordering::SeqCst)));
            }
            let _ = self.tx.send(Msg::Finish);
        } else {
            let _ = self.tx.send(Msg::Abort);
        }
        let result = self.join();
        let result = match (sent, result) {
            (Err(e), Err(StreamError::Cancelled)) => Err(e),
            (_, r) => r,
        };
        self.clean_up(&result);
        result
    }

    /// Aborts the upload at the destination and shreds the spill.
    pub fn abort(mut self) -> StreamError {
        self.shared.cancel.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Abort);
        let r = self.join();
        let r = match r {
            Ok(_) => Err(StreamError::Cancelled),
            other => other,
        };
        self.clean_up(&r);
        r.err().unwrap_or(StreamError::Cancelled)
    }

    fn join(&mut self) -> Result<StoredObject, StreamError> {
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StreamError::Panicked),
            None => Err(StreamError::Stopped),
        }
    }

    /// Shreds what is left unless the error says the spill is kept.
    fn clean_up(&mut self, result: &Result<StoredObject, StreamError>) {
        if matches!(result, Err(StreamError::Failed { .. })) {
            return;
        }
        self.current = None;
        for p in self.shared.pending.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default() {
            let _ = spill::shred(&p);
        }
    }

    fn open_segment(&mut self) -> Result<&mut SpillWriter, StreamError> {
        let path = segment_path(&self.dir)?;
        let w = SpillWriter::create(&path, &self.spill_key)?;
        if let Ok(mut p) = self.shared.pending.lock() {
            p.push(path);
        }
        self.current_len = 0;
        Ok(self.current.insert(w))
    }

    fn seal_segment(&mut self) -> Result<(), StreamError> {
        if let Some(mut w) = self.current.take() {
            w.finish()?;
            self.parts += 1;
            // A closed channel means the uploader stopped; the next write reports it.
            let _ = self.tx.send(Msg::Part { number: self.parts, path: w.path().to_owned() });
        }
        Ok(())
    }
}

impl Drop for ObjectStream {
    /// A stream dropped without `finish` is cancelled.
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.tx.send(Msg::Abort);
            let r = self.join();
            self.clean_up(&r);
        }
    }
}

/// A fresh random spill file name: no room, peer or session names on disk.
pub fn segment_path(dir: &Path) -> Result<PathBuf, SpillError> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut id).map_err(|_| SpillError::Random)?;
    Ok(dir.join(format!("{}.spill", hex(&id))))
}

fn read_segment(path: &Path, key: &SpillKey) -> Result<Zeroizing<Vec<u8>>, SpillError> {
    let mut r = SpillReader::open(path, key)?;
    let mut all = Zeroizing::new(Vec::new());
    while let Some(chunk) = r.next_chunk()? {
        all.extend_from_slice(&chunk);
    }
    Ok(all)
}

/// The uploader thread's work.
fn upload(mut begin: Begin, rx: Receiver<Msg>, key: &SpillKey, policy: RetryPolicy, shared: &Shared) -> Result<StoredObject, StreamError> {
    let mut retry = Retry::new(policy, &shared.cancel);
    let mut up = Resumable { up: retry.run("start", &mut begin)?, begin, kept: Vec::new(), restart: false, key };
    let mut hash = Context::new(&SHA256);
    let mut size = 0u64;
    let result = loop {
        match rx.recv() {
            Ok(Msg::Part { number, path }) => {
                let data = match read_segment(&path, key) {
                    Ok(d) => d,
                    Err(e) => break Err(e.into()),
                };
                if let Err(e) = retry.run("part", &mut || up.put_part(number, &data)) {
                    break Err(e);
                }
                hash.update(&data);
                size += data.len() as u64;
                shared.uploaded.fetch_add(1, Ordering::SeqCst);
                if up.up.confirms_parts() {
                    tracing::debug!(part = number, bytes = data.len(), "part confirmed; its spill segment is shredded");
                    forget(shared, &path);
                } else {
                    up.kept.push((number, path));
                }
            }
            Ok(Msg::Finish) => {
                let sha = hex(hash.clone().finish().as_ref());
                let done = retry.run("complete", &mut || up.complete(size, &sha));
                if done.is_ok() {
                    for (_, p) in std::mem::take(&mut up.kept) {
                        forget(shared, &p);
                    }
                }
                let ended = shared.ended.lock().ok().and_then(|e| *e);
                break done.map(|mut o| {
                    o.streaming = ended.map(|(at, before)| StreamStats {
                        parts: shared.uploaded.load(Ordering::SeqCst),
                        parts_uploaded_before_end: before,
                        end_to_confirmed_ms: at.elapsed().as_millis() as u64,
                    });
                    o
                });
            }
            Ok(Msg::Abort) | Err(_) => break Err(StreamError::Cancelled),
        }
    };
    if result.is_err() {
        up.up.abort();
    }
    result
}

/// Shreds a confirmed segment and stops tracking it.
fn forget(shared: &Shared, path: &Path) {
    let _ = spill::shred(path);
    if let Ok(mut p) = shared.pending.lock() {
        p.retain(|q| q != path);
    }
}

/// An upload plus what is needed to start it again from the first part, for destinations
/// that confirm parts only with the object.
struct Resumable<'a> {
    up: Box<dyn ObjectUpload>,
    begin: Begin,
    /// Segments sent but not yet confirmed, in order.
    kept: Vec<(u32, PathBuf)>,
    restart: bool,
    key: &'a SpillKey,
}

impl Resumable<'_> {
    fn put_part(&mut self, number: u32, data: &[u8]) -> Result<(), UploadError> {
        self.restart_if_needed()?;
        let r = self.up.put_part(number, data);
        self.restart = r.is_err() && !self.up.confirms_parts();
        r
    }

    fn complete(&mut self, size: u64, sha256: &str) -> Result<StoredObject, UploadError> {
        self.restart_if_needed()?;
        let r = self.up.complete(size, sha256);
        self.restart = r.is_err() && !self.up.confirms_parts();
        r
    }

    /// After a failure of an upload that confirms nothing before completion: abandon it,
    /// start a new one and send the kept parts again.
    fn restart_if_needed(&mut self) -> Result<(), UploadError> {
        if !self.restart {
            return Ok(());
        }
        self.up.abort();
        self.up = (self.begin)()?;
        tracing::info!(parts = self.kept.len(), "upload restarted; sending the kept parts again");
        for (n, p) in &self.kept {
            let data = read_segment(p, self.key)?;
            self.up.put_part(*n, &data)?;
        }
        self.restart = false;
        Ok(())
    }
}

struct Retry<'a> {
    policy: RetryPolicy,
    cancel: &'a AtomicBool,
    last_success: Instant,
}

impl<'a> Retry<'a> {
    fn new(policy: RetryPolicy, cancel: &'a AtomicBool) -> Self {
        Self { policy, cancel, last_success: Instant::now() }
    }

    fn run<T>(&mut self, what: &str, f: &mut dyn FnMut() -> Result<T, UploadError>) -> Result<T, StreamError> {
        let mut backoff = self.policy.first_backoff;
        let mut attempt = 1u32;
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(StreamError::Cancelled);
            }
            match f() {
                Ok(v) => {
                    self.last_success = Instant::now();
                    return Ok(v);
                }
                Err(e) if !e.is_transient() => return Err(StreamError::Failed { cause: e }),
                Err(e) if self.last_success.elapsed() >= self.policy.retention => {
                    return Err(StreamError::GaveUp { cause: e, retention_s: self.policy.retention.as_secs() })
                }
                Err(e) => {
                    let wait = jitter(backoff);
                    tracing::warn!(step = what, attempt, retry_in_ms = wait.as_millis() as u64, error = %e, "upload failed; retrying");
                    let until = Instant::now() + wait;
                    while Instant::now() < until {
                        if self.cancel.load(Ordering::SeqCst) {
                            return Err(StreamError::Cancelled);
                        }
                        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
                    }
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                    attempt += 1;
                }
            }
        }
    }
}

/// Between half and all of `d`, so that many workers do not retry in step.
fn jitter(d: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let f = 0.5 + 0.5 * (u16::from_le_bytes(b) as f64 / u16::MAX as f64);
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::{DestinationFault, Destination};

    fn spill_files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "spill")).count()
    }

    fn local(dir: &Path) -> Destination {
        let mut d = Destination::parse(&format!("file://{}", dir.join("out").display())).unwrap();
        d.set_part_size(10);
        d
    }

    fn begin_for(dest: &Destination, key: &'static str) -> Begin {
        let dest = dest.clone();
        Box::new(move || dest.begin(key, "application/octet-stream"))
    }

    #[test]
    fn streams_parts_and_keeps_only_unconfirmed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let dest = local(dir.path());
        let key = SpillKey::generate().unwrap();
        let mut s = ObjectStream::start(begin_for(&dest, "x/y.bin"), (10, 10), dir.path(), &key, RetryPolicy::default(), Arc::default());
        let data: Vec<u8> = (0..35u8).collect();
        s.write(&data[..12]).unwrap();
        s.write(&data[12..]).unwrap();
        // parts 1-3 were handed over; wait until they are confirmed and shredded
        let t = Instant::now();
        while spill_files(dir.path()) > 1 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(spill_files(dir.path()), 1, "only the open segment remains");
        let o = s.finish().unwrap();
        assert_eq!(std::fs::read(dir.path().join("out/x/y.bin")).unwrap(), data);
        assert_eq!((o.size, o.sha256), (35, crate::privacy::sha256_hex(&data)));
        assert_eq!(spill_files(dir.path()), 0);
    }

    #[test]
    fn a_small_first_part_then_full_parts() {
        let dir = tempfile::tempdir().unwrap();
        let dest = local(dir.path());
        let key = SpillKey::generate().unwrap();
        let parts = Arc::new(Mutex::new(Vec::new()));
        struct Sizes(Box<dyn ObjectUpload>, Arc<Mutex<Vec<usize>>>);
        impl ObjectUpload for Sizes {
            fn put_part(&mut self, n: u32, d: &[u8]) -> Result<(), UploadError> {
                self.1.lock().unwrap().push(d.len());
                self.0.put_part(n, d)
            }
            fn complete(&mut self, size: u64, sha: &str) -> Result<StoredObject, UploadError> {
                self.0.complete(size, sha)
            }
            fn abort(&mut self) {}
        }
        let (d, p) = (dest.clone(), parts.clone());
        let begin: Begin = Box::new(move || Ok(Box::new(Sizes(d.begin("s.bin", "x")?, p.clone())) as Box<dyn ObjectUpload>));
        let mut s = ObjectStream::start(begin, (4, 10), dir.path(), &key, RetryPolicy::default(), Arc::default());
        s.write(&[3u8; 25]).unwrap();
        assert_eq!(s.finish().unwrap().size, 25);
        assert_eq!(*parts.lock().unwrap(), [4, 10, 10, 1]);
    }

    /// A destination that fails transiently a few times, then works (the retry logic alone;
    /// real servers are exercised in tests/upload_*.rs).
    struct Flaky {
        inner: Box<dyn ObjectUpload>,
        failures: Arc<Mutex<u32>>,
        fault: DestinationFault,
        deferred: bool,
    }

    impl ObjectUpload for Flaky {
        fn confirms_parts(&self) -> bool {
            !self.deferred
        }
        fn put_part(&mut self, n: u32, d: &[u8]) -> Result<(), UploadError> {
            let mut f = self.failures.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(UploadError::Destination { dest: "flaky".into(), message: "503".into(), fault: self.fault });
            }
            self.inner.put_part(n, d)
        }
        fn complete(&mut self, size: u64, sha: &str) -> Result<StoredObject, UploadError> {
            self.inner.complete(size, sha)
        }
        fn abort(&mut self) {
            self.inner.abort()
        }
    }

    fn flaky(dest: &Destination, failures: u32, fault: DestinationFault) -> Begin {
        flaky_with(dest, failures, fault, false, Arc::default())
    }

    fn flaky_with(dest: &Destination, failures: u32, fault: DestinationFault, deferred: bool, begins: Arc<Mutex<u32>>) -> Begin {
        let dest = dest.clone();
        let failures = Arc::new(Mutex::new(failures));
        Box::new(move || {
            *begins.lock().unwrap() += 1;
            Ok(Box::new(Flaky { inner: dest.begin("f.bin", "x")?, failures: failures.clone(), fault, deferred }) as Box<dyn ObjectUpload>)
        })
    }

    #[test]
    fn deferred_confirmation_keeps_segments_and_restarts_from_the_first_part() {
        let dir = tempfile::tempdir().unwrap();
        let dest = local(dir.path());
        let key = SpillKey::generate().unwrap();
        let begins = Arc::new(Mutex::new(0));
        // Two parts go through, then one failure: the upload starts over and re-sends them.
        let mut s = ObjectStream::start(flaky_with(&dest, 0, DestinationFault::Unreachable, true, begins.clone()), (10, 10), dir.path(), &key, fast(10_000), Arc::default());
        s.write(&[5u8; 20]).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) && spill_files(dir.path()) < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(spill_files(dir.path()), 2, "unconfirmed segments stay on disk");
        s.write(&[6u8; 5]).unwrap();
        let o = s.finish().unwrap();
        assert_eq!(o.size, 25);
        assert_eq!(spill_files(dir.path()), 0, "wiped once the object is confirmed");
        assert_eq!(*begins.lock().unwrap(), 1);
        let mut expected = vec![5u8; 20];
        expected.extend([6u8; 5]);
        assert_eq!(std::fs::read(dir.path().join("out/f.bin")).unwrap(), expected);

        // Now with a failure in the middle.
        let begins = Arc::new(Mutex::new(0));
        let dir = tempfile::tempdir().unwrap();
        let dest = local(dir.path());
        let failures = Arc::new(Mutex::new(0));
        let (d, b, f) = (dest.clone(), begins.clone(), failures.clone());
        let begin: Begin = Box::new(move || {
            *b.lock().unwrap() += 1;
            Ok(Box::new(Flaky { inner: d.begin("g.bin", "x")?, failures: f.clone(), fault: DestinationFault::Unreachable, deferred: true }) as Box<dyn ObjectUpload>)
        });
        let mut s = ObjectStream::start(begin, (10, 10), dir.path(), &key, fast(10_000), Arc::default());
        s.write(&[1u8; 20]).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) && spill_files(dir.path()) < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        *failures.lock().unwrap() = 1; // the third part fails once
        s.write(&[2u8; 10]).unwrap();
        let o = s.finish().unwrap();
        assert_eq!(o.size, 30);
        assert_eq!(*begins.lock().unwrap(), 2, "restarted once");
        let mut expected = vec![1u8; 20];
        expected.extend([2u8; 10]);
        assert_eq!(std::fs::read(dir.path().join("out/g.bin")).unwrap(), expected);
        assert_eq!(spill_files(dir.path()), 0);
    }

    fn fast(retention_ms: u64) -> RetryPolicy {
        RetryPolicy { retention: Duration::from_millis(retention_ms), first_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(20) }
    }

    #[test]
    fn transient_failures_are_retried_and_resume_at_the_same_part() {
        let dir = tempfile::tempdir().unwrap();
        let dest = local(dir.path());
        let key = SpillKey::generate().unwrap();
        let mut s = ObjectStream::start(flaky(&dest, 4, DestinationFault::Unreachable), (10, 10), dir.path(), &key, fast(10_000), Arc::default());
        s.write(&[7u8; 25]).unwrap();
        assert_eq!(s.finish().unwrap().size, 25);
        assert_eq!(std::fs::read(dir.path().join("out/f.bin")).unwrap(), vec![7u8; 25]);
    }

    #[test]
    fn permanent_failure_keeps_the_spill_and_stops_writes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = local(dir.path());
        let key = SpillKey::generate().unwrap();
        let mut s = ObjectStream::start(flaky(&dest, 1, DestinationFault::Permission), (10, 10), dir.path(), &key, fast(10_000), Arc::default());
        s.write(&[1u8; 10]).unwrap();
        let t = Instant::now();
        while !s.stopped() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(s.write(b"more"), Err(StreamError::Stopped)));
        let e = s.finish().unwrap_err();
        assert!(matches!(e, StreamError::Failed { .. }), "{e}");
        assert!(spill_files(dir.path()) >= 1, "the encrypted spill stays");
    }

    #[test]
    fn retention_exceeded_shreds_the_spill() {
        let dir = tempfile::tempdir().unwrap();
        let dest = local(dir.path());
        let key = SpillKey::generate().unwrap();
        let mut s = ObjectStream::start(flaky(&dest, u32::MAX, DestinationFault::Unreachable), (10, 10), dir.path(), &key, fast(100), Arc::default());
        s.write(&[1u8; 15]).unwrap();
        let e = s.finish().unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
        assert_eq!(spill_files(dir.path()), 0);
        assert!(!dir.path().join("out/f.bin").exists());
    }

    #[test]
    fn abort_shreds_and_leaves_nothing_at_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = local(dir.path());
        let key = SpillKey::generate().unwrap();
        let mut s = ObjectStream::start(begin_for(&dest, "a.bin"), (10, 10), dir.path(), &key, RetryPolicy::default(), Arc::default());
        s.write(&[1u8; 25]).unwrap();
        assert!(matches!(s.abort(), StreamError::Cancelled));
        assert_eq!(spill_files(dir.path()), 0);
        assert_eq!(std::fs::read_dir(dir.path().join("out")).unwrap().count(), 0);
    }
}
