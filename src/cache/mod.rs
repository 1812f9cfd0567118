//! The disk cache: what casterpak made, kept in files under one directory
//! and indexed in SQLite (`cache.db`, WAL mode).
//!
//! Lifecycle of an object, in this order so that a crash or a kill at any
//! moment never leaves something a request would serve wrongly:
//!
//! 1. Make the bytes straight into `tmp/<unique>`, a bounded buffer at a
//!    time (and fsync it when `cache.fsync` is set).
//! 2. Rename that file to `objects/<hh>/<hash>.<ext>` (atomic).
//! 3. Insert the row (key, file, kind, bytes, times, sources).
//!
//! A hit needs the row *and* a file of the row's size; anything else is a
//! miss and is made again. Without fsync, a killed or crashed process still
//! never leaves a partial object (the rename comes after the whole write);
//! only a power loss could, on some filesystems, keep a renamed file whose
//! data never reached the disk. Removal (gc, invalidate --hard) deletes the file
//! first, then the row. A reader that already opened the file keeps reading
//! it: files are only ever unlinked, never truncated or rewritten.
//!
//! A segment made for a request is made into memory instead (`held`),
//! answered from there as soon as it is whole, and only then put through
//! steps 1-3, once the answers that took it are done with it (or after
//! [`Cache::answer_wait`]).
//!
//! When the object cannot be stored (a full disk, a read-only cache), it is
//! made again into memory and answered all the same; nothing already cached
//! is touched.
//!
//! [`Cache::reconcile`] removes leftovers of interrupted runs: temporary
//! files, rows without a file (or with a file of another size), and files
//! without a row (older than a minute, so that another process's step 2-3
//! in progress is not mistaken for one). It and gc read the index in
//! batches, never all of it at once, so that neither grows with the cache
//! nor holds SQLite's write lock for long.
//!
//! Last-access times and hit/miss counters are kept in memory and written
//! in batches ([`Cache::flush_use`]), so a hit costs no SQLite write.

mod admin;
mod clock;
mod db;
pub mod flight;
mod gc;
mod held;
pub mod housekeeping;
mod inputs;
mod reconcile;
pub mod remote;
mod source;
mod store;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

pub use admin::{Fetched, KindStats, SourceStats, Stats, FETCHED_BYTES, FETCHED_REQUESTS};
pub use clock::{clock_at, Clock, FixedClock, SystemClock};
pub use gc::{ByReason, GcDeletion, GcPolicy, GcReport, Reason, Tally};
pub use held::{Answering, Held};
pub use inputs::{
    Backend, BackendKind, Input, Inputs, Settings as InputSettings, Sources, MAX_SIDECARS,
};
pub use source::{resolve_local, SourceId};

use flight::{Flights, Role};

/// How long a request waits for a concurrent request making the same
/// object before it gives up (a leader stuck on a hung network mount).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// How long an object made for an answer waits, at most, for the answer to
/// send it before it is stored: a client on a fast link has a 4 MB segment
/// well within it, and a slow one holds a worker no longer.
pub const DEFAULT_ANSWER_WAIT: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no such source: {0}")]
    NotFound(String),
    /// A file operation failed. The error keeps its kind, so that a full
    /// disk is still `StorageFull` where it is handled.
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
    #[error("cache database: {0}")]
    Db(rusqlite::Error),
    /// A command that only reads or cleans a cache was pointed at a
    /// directory without one.
    #[error("no cache in {}: there is no {} (check --cache-dir or cache.dir)", .0.display(), .0.join(db::FILE_NAME).display())]
    NoCache(PathBuf),
    /// Another request has been making this object for longer than the wait
    /// allows.
    #[error("still being made by another request after {0:?}")]
    Busy(Duration),
    /// A remote store failed or refused.
    #[error(transparent)]
    Remote(remote::RemoteError),
}

impl CacheError {
    pub fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        CacheError::Io {
            context: context.into(),
            error,
        }
    }

    /// The kind of an I/O failure.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            CacheError::Io { error, .. } => Some(error.kind()),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for CacheError {
    fn from(e: rusqlite::Error) -> Self {
        CacheError::Db(e)
    }
}

/// What a caller asks the cache for.
pub struct ObjectSpec<'a> {
    /// Everything the bytes depend on (format version, parameters, sources).
    pub key: String,
    /// `playlist`, `segment`, `index` or `input`.
    pub kind: &'static str,
    /// File name extension of the object file.
    pub ext: &'static str,
    pub sources: &'a [SourceId],
}

/// An object's bytes: its cache file, or memory when it could not be
/// stored. Read with positional reads, so one body can be shared by every
/// request waiting for it.
#[derive(Clone)]
pub enum Body {
    File(Arc<File>),
    Bytes(Arc<Vec<u8>>),
    /// Made into memory to be answered before it is stored
    /// ([`Cache::get_or_stream`]), within a budget.
    Held(Arc<Held>),
    /// The same, as handed to the answer it was made for: it is stored
    /// once the last clone is dropped (the answer's last bytes sent, or the
    /// answer dropped without them), or after [`Cache::answer_wait`].
    Answered(Arc<Answering>),
}

impl Body {
    /// Reads into `buf` from `offset`; 0 at the end.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        match self {
            Body::File(file) => file.read_at(buf, offset),
            Body::Bytes(bytes) => Ok(copy_from(bytes, buf, offset)),
            Body::Held(held) => Ok(copy_from(held.bytes(), buf, offset)),
            Body::Answered(answer) => Ok(copy_from(answer.bytes(), buf, offset)),
        }
    }

    /// Appends to `buf`, which holds the bytes from `start` on, the next
    /// ones, as many as its spare capacity holds (fewer at the end; no
    /// zeroing first); how many. With `at_once`,
    /// a file is read only as far as the page cache holds it, never
    /// waiting for a disk: a short count, or `WouldBlock`, means the rest
    /// must be read where waiting is allowed (a thread of the blocking
    /// pool, not an event loop).
    pub fn read_spare(
        &self,
        buf: &mut Vec<u8>,
        start: u64,
        at_once: bool,
    ) -> std::io::Result<usize> {
        let spare = buf.capacity() - buf.len();
        let offset = start.saturating_add(buf.len() as u64);
        let n = match self {
            Body::Bytes(bytes) => copy_into(bytes, buf, offset, spare),
            Body::Held(held) => copy_into(held.bytes(), buf, offset, spare),
            Body::Answered(answer) => copy_into(answer.bytes(), buf, offset, spare),
            Body::File(file) => {
                let offset = i64::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
                let iov = libc::iovec {
                    iov_base: buf.spare_capacity_mut().as_mut_ptr().cast(),
                    iov_len: spare,
                };
                let flags = if at_once { libc::RWF_NOWAIT } else { 0 };
                // SAFETY: `iov` covers `buf`'s spare capacity, which the
                // kernel writes at most `spare` bytes of; `file` is open.
                let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, flags) };
                let read = usize::try_from(read).map_err(|_| std::io::Error::last_os_error())?;
                // SAFETY: the kernel initialized the first `read` bytes of
                // the spare capacity.
                unsafe { buf.set_len(buf.len() + read) };
                read
            }
        };
        Ok(n)
    }
}

/// Appends what `bytes` hold from `offset`, at most `max`, to `buf`; how many.
fn copy_into(bytes: &[u8], buf: &mut Vec<u8>, offset: u64, max: usize) -> usize {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let n = max.min(bytes.len() - start);
    buf.extend_from_slice(&bytes[start..start + n]);
    n
}

/// Copies what `bytes` hold from `offset` into `buf`; how many.
fn copy_from(bytes: &[u8], buf: &mut [u8], offset: u64) -> usize {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let n = buf.len().min(bytes.len() - start);
    buf[..n].copy_from_slice(&bytes[start..start + n]);
    n
}

/// Where an object's bytes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The cache had it.
    Hit,
    /// Made for this request.
    Miss,
    /// Made for a concurrent request for the same object, which this one waited for.
    Shared,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Hit => "hit",
            State::Miss => "miss",
            State::Shared => "shared",
        }
    }

    /// As the `X-Cache` header says it.
    pub fn as_header(self) -> &'static str {
        match self {
            State::Hit => "HIT",
            State::Miss => "MISS",
            State::Shared => "SHARED",
        }
    }
}

pub struct Object {
    pub body: Body,
    pub len: u64,
    pub state: State,
    /// A strong validator: a hash of the key, which determines the bytes.
    pub etag: String,
}

impl Object {
    /// The whole body in memory.
    pub fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        if let Body::Bytes(bytes) = self.body {
            return Ok(Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone()));
        }
        let mut out = vec![0; usize::try_from(self.len).unwrap_or(usize::MAX)];
        let mut done = 0;
        while done < out.len() {
            match self.body.read_at(&mut out[done..], done as u64)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(out)
    }
}

/// Why [`Cache::get_or_make`] failed: making the object, or the cache.
#[derive(Debug)]
pub enum Failure<E> {
    Make(E),
    Cache(CacheError),
}

pub struct Cache {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    pool: Mutex<Vec<Connection>>,
    flights: Flights,
    accessed: Mutex<HashMap<String, i64>>,
    hits: AtomicU64,
    misses: AtomicU64,
    temp_counter: AtomicU64,
    /// fsync each object before it is renamed into place.
    fsync: bool,
    /// Bytes of objects held in memory for their answers ([`Held`]).
    held: Arc<AtomicU64>,
    /// How long a request waits for a concurrent one making the same object.
    wait: Duration,
    /// How long an object made for an answer waits for it before it is
    /// stored.
    answer_wait: Duration,
    /// When a failure to store was last logged (they are logged at most
    /// once a minute, not on every miss of a full disk).
    store_warned: Mutex<Option<std::time::Instant>>,
}

impl Cache {
    /// Opens the cache in `dir`, creating it if needed.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Cache, CacheError> {
        for sub in ["objects", "tmp"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|e| CacheError::io(format!("creating {}", path.display()), e))?;
        }
        Self::open_dir(dir, clock)
    }

    /// Opens an existing cache; a directory that holds none is an error
    /// rather than a new, empty cache (a mistyped `--cache-dir`), and
    /// nothing is created in it.
    pub fn open_existing(dir: &Path, clock: Arc<dyn Clock>) -> Result<Cache, CacheError> {
        let path = dir.join(db::FILE_NAME);
        if !path.is_file() {
            return Err(CacheError::NoCache(dir.to_owned()));
        }
        let conn = db::open_existing(&path)?;
        Self::with_connection(dir, conn, clock)
    }

    fn open_dir(dir: &Path, clock: Arc<dyn Clock>) -> Result<Cache, CacheError> {
        let conn = db::open(&dir.join(db::FILE_NAME))?;
        Self::with_connection(dir, conn, clock)
    }

    fn with_connection(
        dir: &Path,
        mut conn: Connection,
        clock: Arc<dyn Clock>,
    ) -> Result<Cache, CacheError> {
        db::upgrade(&mut conn)?;
        Ok(Cache {
            dir: dir.to_owned(),
            clock,
            pool: Mutex::new(vec![conn]),
            flights: Flights::default(),
            accessed: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            temp_counter: AtomicU64::new(0),
            held: Arc::default(),
            fsync: false,
            wait: DEFAULT_WAIT,
            answer_wait: DEFAULT_ANSWER_WAIT,
            store_warned: Mutex::default(),
        })
    }

    /// Makes every stored object durable (fsync before the rename) rather
    /// than only atomic. See `cache.fsync` in the README.
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// How long a request waits for another one making the same object.
    /// How long a request waits for a concurrent one making what it wants.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How long an object made for an answer waits, at most, for the
    /// answers that took it to send it before it is stored.
    pub fn answer_wait(&self) -> Duration {
        self.answer_wait
    }

    pub fn with_answer_wait(mut self, wait: Duration) -> Self {
        self.answer_wait = wait;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Runs `f` with a connection from the pool.
    pub fn with_db<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, CacheError> {
        let pooled = self.pool.lock().expect("pool lock").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => db::open(&self.dir.join(db::FILE_NAME))?,
        };
        let result = f(&mut conn);
        self.pool.lock().expect("pool lock").push(conn);
        Ok(result?)
    }

    /// The object for `spec`: from the cache, or made by `make` into the
    /// writer it is given and stored. Concurrent calls for the same key make
    /// it once. `make` may run twice, the second time into memory, when
    /// the first attempt could not be stored. What `make` returns comes back
    /// with the object when this call made it.
    pub fn get_or_make<T, E>(
        &self,
        spec: &ObjectSpec,
        make: impl Fn(&mut dyn Write) -> Result<T, E>,
    ) -> Result<(Object, Option<T>), Failure<E>> {
        self.get_or_lead(spec, |_, _| self.make_and_store(spec, &make))
    }

    /// As [`Cache::get_or_make`], for an object whose length `make` can
    /// tell before its first byte (it calls its `announce` with it): one
    /// that fits the memory budget is made into memory, handed to `ready`
    /// (as [`Body::Answered`]) as soon as it is whole, so that its answer
    /// starts then, and only then written to its file and stored: once the
    /// answers that took it are done with it, or after
    /// [`Cache::answer_wait`]. `ready` is not called on a hit, for a
    /// follower, or for an object made straight into its file. Without it
    /// (making ahead, pre-warming) the object is stored at once, or after
    /// the answers of the followers that took it while it was made.
    pub fn get_or_stream<T, E>(
        &self,
        spec: &ObjectSpec,
        ready: Option<&dyn Fn(Object)>,
        make: impl Fn(&mut dyn Write, &dyn Fn(u64)) -> Result<T, E>,
    ) -> Result<(Object, Option<T>), Failure<E>> {
        self.get_or_lead(spec, |object, share| {
            let announce = |held: &Arc<Held>, len| {
                // Those waiting for it start their answers too.
                share(Body::Held(Arc::clone(held)), len);
                if let Some(ready) = ready {
                    let answered = Body::Answered(Arc::new(held.answer()));
                    ready(object(answered, len, State::Miss));
                }
            };
            self.stream_and_store(spec, &announce, &make)
        })
    }

    /// The object for `spec` from the cache, from a concurrent call making
    /// it, or made by `lead` (given how to dress a body as the object, and
    /// how to hand a whole body to those waiting before it is stored).
    fn get_or_lead<T, E>(
        &self,
        spec: &ObjectSpec,
        lead: impl Fn(
            &dyn Fn(Body, u64, State) -> Object,
            &dyn Fn(Body, u64),
        ) -> Result<(Body, u64, T), Failure<E>>,
    ) -> Result<(Object, Option<T>), Failure<E>> {
        let etag = etag_of(&spec.key);
        let object = |body, len, state| Object {
            body,
            len,
            state,
            etag: etag.clone(),
        };
        loop {
            if let Some(hit) = self.lookup(&spec.key, &etag).map_err(Failure::Cache)? {
                return Ok((hit, None));
            }
            match self.flights.join(&spec.key, self.wait) {
                Role::Follower(Some((body, len))) => {
                    return Ok((object(body, len, State::Shared), None));
                }
                Role::Follower(None) | Role::Stored => continue,
                Role::TimedOut => return Err(Failure::Cache(CacheError::Busy(self.wait))),
                Role::Leader(leader) => {
                    // It may have been stored between our lookup and joining.
                    if let Some(hit) = self.lookup(&spec.key, &etag).map_err(Failure::Cache)? {
                        leader.finish(None);
                        return Ok((hit, None));
                    }
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let share = |body, len| leader.share((body, len));
                    let (body, len, made) = lead(&object, &share)?;
                    leader.finish(Some((body.clone(), len)));
                    return Ok((object(body, len, State::Miss), Some(made)));
                }
            }
        }
    }

    /// Counts a hit on the object of `key` served from a copy in memory,
    /// and its use (for gc's least-recently-used order).
    pub fn count_hit(&self, key: &str) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let mut accessed = self.accessed.lock().expect("access lock");
        match accessed.get_mut(key) {
            Some(at) => *at = now,
            None => {
                accessed.insert(key.to_string(), now);
            }
        }
    }

    /// Counts a miss of an object made outside [`Cache::get_or_make`]
    /// (stored later with [`Cache::store`]).
    pub fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// The object of `key`, if the cache has it.
    pub fn find(&self, key: &str) -> Result<Option<Object>, CacheError> {
        self.lookup(key, &etag_of(key))
    }

    fn lookup(&self, key: &str, etag: &str) -> Result<Option<Object>, CacheError> {
        let Some(row) = self.with_db(|c| db::lookup(c, key))? else {
            return Ok(None);
        };
        let path = self.dir.join(&row.file);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::io(format!("opening {}", path.display()), e)),
        };
        let len = file
            .metadata()
            .map_err(|e| CacheError::io(format!("reading {}", path.display()), e))?
            .len();
        if len != row.bytes {
            tracing::warn!(
                "cache file {} has {len} bytes, its row says {}: making it again",
                row.file,
                row.bytes
            );
            return Ok(None);
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.accessed
            .lock()
            .expect("access lock")
            .insert(key.to_string(), self.clock.now());
        Ok(Some(Object {
            body: Body::File(Arc::new(file)),
            len,
            state: State::Hit,
            etag: etag.to_string(),
        }))
    }

    /// Adds to counters, by name.
    pub fn add_counters(&self, counters: &[(String, u64)]) -> Result<(), CacheError> {
        self.with_db(|c| db::add_counters(c, counters))
    }

    /// Writes the last-access times and counters gathered since the last call.
    pub fn flush_use(&self) -> Result<(), CacheError> {
        let accesses: Vec<(String, i64)> =
            std::mem::take(&mut *self.accessed.lock().expect("access lock"))
                .into_iter()
                .collect();
        let hits = self.hits.swap(0, Ordering::Relaxed);
        let misses = self.misses.swap(0, Ordering::Relaxed);
        if accesses.is_empty() && hits == 0 && misses == 0 {
            return Ok(());
        }
        self.with_db(|c| db::record_use(c, &accesses, &[("hits", hits), ("misses", misses)]))
    }
}

/// `bytes` in lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The ETag of the object of `key`: a hash of what determines its bytes.
pub fn etag_of(key: &str) -> String {
    format!("\"{}\"", &hex(&Sha256::digest(key.as_bytes()))[..20])
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_x_cache_header_names_the_state() {
        for state in [State::Hit, State::Miss, State::Shared] {
            assert_eq!(state.as_header(), state.as_str().to_ascii_uppercase());
        }
    }

    #[test]
    fn a_file_out_of_the_page_cache_is_not_read_at_once_and_is_read_whole_by_a_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object");
        let bytes: Vec<u8> = (0..(4u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = File::create(&path).unwrap();
        file.write_all(&bytes).unwrap();
        file.sync_all().unwrap();
        let file = File::open(&path).unwrap();
        // SAFETY: a valid descriptor; advice only.
        let evicted =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) } == 0;
        let body = Body::File(Arc::new(file));
        let start = 1000;
        let mut buf = Vec::with_capacity(bytes.len() - 2000);
        let mut at_once = 0;
        while buf.len() < buf.capacity() {
            match body.read_spare(&mut buf, start, true) {
                Ok(n) if n > 0 => at_once += n,
                _ => break,
            }
        }
        // tmpfs has no disk to wait for.
        if evicted && !is_tmpfs(dir.path()) {
            assert!(
                at_once < buf.capacity(),
                "read at once from a disk: {at_once}"
            );
        }
        while buf.len() < buf.capacity() {
            assert!(body.read_spare(&mut buf, start, false).unwrap() > 0);
        }
        assert!(buf == bytes[1000..bytes.len() - 1000]);
        // At the end: fewer, then none.
        let mut tail = Vec::with_capacity(4000);
        assert_eq!(
            body.read_spare(&mut tail, bytes.len() as u64 - 10, false)
                .unwrap(),
            10
        );
        assert_eq!(
            body.read_spare(&mut tail, bytes.len() as u64 - 10, true)
                .unwrap(),
            0
        );
        assert_eq!(tail, bytes[bytes.len() - 10..]);
    }

    fn is_tmpfs(path: &std::path::Path) -> bool {
        let out = std::process::Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "tmpfs"
    }
}
