//! The disk cache: what casterpak made, kept in files under one directory
//! and indexed in SQLite (`cache.db`, WAL mode).
//!
//! Lifecycle of an object, in this order so that a crash or a kill at any
//! moment never leaves something a request would serve wrongly:
//!
//! 1. Make the bytes; write them to `tmp/<unique>` (and fsync it when
//!    `cache.fsync` is set).
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
//! On start-up, [`Cache::reconcile`] removes leftovers of interrupted runs:
//! temporary files, rows without a file (or with a file of another size),
//! and files without a row (older than a minute, so that another process's
//! step 2-3 in progress is not mistaken for one).
//!
//! Last-access times and hit/miss counters are kept in memory and written
//! in batches ([`Cache::flush_use`]), so a hit costs no SQLite write.

mod admin;
mod clock;
mod db;
mod flight;
mod source;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

pub use admin::{GcPolicy, GcReport, Stats};
pub use clock::{Clock, FixedClock, SystemClock};
pub use source::{resolve_local, SourceId};

use flight::{Flights, Role};

/// Files without a row younger than this are left alone by reconcile.
const ORPHAN_GRACE_SECONDS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no such source: {0}")]
    NotFound(String),
    #[error("cache I/O: {0}")]
    Io(String),
    #[error("cache database: {0}")]
    Db(#[from] rusqlite::Error),
}

impl From<std::io::Error> for CacheError {
    fn from(e: std::io::Error) -> Self {
        CacheError::Io(e.to_string())
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

pub enum Body {
    File(File),
    Bytes(Arc<Vec<u8>>),
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
        match self.body {
            Body::Bytes(bytes) => {
                Ok(Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone()))
            }
            Body::File(mut file) => {
                let mut out = Vec::with_capacity(self.len as usize);
                std::io::Read::read_to_end(&mut file, &mut out)?;
                Ok(out)
            }
        }
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
}

impl Cache {
    /// Opens (creating if needed) the cache in `dir`.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Cache, CacheError> {
        for sub in ["objects", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
                CacheError::Io(format!("creating {}: {e}", dir.join(sub).display()))
            })?;
        }
        let mut conn = db::open(&dir.join("cache.db"))?;
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
            fsync: false,
        })
    }

    /// Makes every stored object durable (fsync before the rename) rather
    /// than only atomic. See `cache.fsync` in the README.
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
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
            None => db::open(&self.dir.join("cache.db"))?,
        };
        let result = f(&mut conn);
        self.pool.lock().expect("pool lock").push(conn);
        Ok(result?)
    }

    /// The object for `spec`: from the cache, or made by `make` and stored.
    /// Concurrent calls for the same key make it once.
    pub fn get_or_make<E>(
        &self,
        spec: &ObjectSpec,
        make: impl Fn() -> Result<Vec<u8>, E>,
    ) -> Result<Object, Failure<E>> {
        let etag = etag_of(&spec.key);
        loop {
            if let Some(object) = self.lookup(&spec.key, &etag).map_err(Failure::Cache)? {
                return Ok(object);
            }
            match self.flights.join(&spec.key) {
                Role::Follower(Some(bytes)) => {
                    return Ok(Object {
                        len: bytes.len() as u64,
                        body: Body::Bytes(bytes),
                        state: State::Shared,
                        etag,
                    });
                }
                Role::Follower(None) => continue,
                Role::Leader(leader) => {
                    // It may have been stored between our lookup and joining.
                    if let Some(object) = self.lookup(&spec.key, &etag).map_err(Failure::Cache)? {
                        leader.finish(None);
                        return Ok(object);
                    }
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let started = std::time::Instant::now();
                    let bytes = Arc::new(make().map_err(Failure::Make)?);
                    let made = started.elapsed();
                    // A cache that cannot store (a full disk) still answers.
                    if let Err(e) = self.store(spec, &bytes) {
                        tracing::error!("not cached: {e}");
                    }
                    tracing::debug!(
                        "{} of {} bytes made in {:.2} ms, stored in {:.2} ms",
                        spec.kind,
                        bytes.len(),
                        made.as_secs_f64() * 1e3,
                        (started.elapsed() - made).as_secs_f64() * 1e3
                    );
                    leader.finish(Some(Arc::clone(&bytes)));
                    return Ok(Object {
                        len: bytes.len() as u64,
                        body: Body::Bytes(bytes),
                        state: State::Miss,
                        etag,
                    });
                }
            }
        }
    }

    fn lookup(&self, key: &str, etag: &str) -> Result<Option<Object>, CacheError> {
        let Some(row) = self.with_db(|c| db::lookup(c, key))? else {
            return Ok(None);
        };
        let file = match File::open(self.dir.join(&row.file)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
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
            body: Body::File(file),
            len,
            state: State::Hit,
            etag: etag.to_string(),
        }))
    }

    /// Steps 1-3 of the lifecycle.
    fn store(&self, spec: &ObjectSpec, bytes: &[u8]) -> Result<(), CacheError> {
        let hash = hex(&Sha256::digest(spec.key.as_bytes()));
        let rel = format!("objects/{}/{hash}.{}", &hash[..2], spec.ext);
        let final_path = self.dir.join(&rel);
        let temp = self.dir.join("tmp").join(format!(
            "{hash}.{}.{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = File::create(&temp)?;
            f.write_all(bytes)?;
            if self.fsync {
                f.sync_data()?;
            }
            std::fs::create_dir_all(final_path.parent().expect("objects/<hh>"))?;
            std::fs::rename(&temp, &final_path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(CacheError::Io(format!(
                "storing {}: {e}",
                final_path.display()
            )));
        }
        let sources: Vec<(String, u64, i64)> = spec
            .sources
            .iter()
            .map(|s| (s.rel.clone(), s.size, s.mtime_ns))
            .collect();
        let row = db::NewObject {
            key: &spec.key,
            file: &rel,
            kind: spec.kind,
            bytes: bytes.len() as u64,
            sources: &sources,
        };
        let now = self.clock.now();
        self.with_db(|c| db::insert(c, &row, now))
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

    /// Removes what interrupted runs left: temporary files, rows whose file
    /// is missing or of the wrong size, files without a row. Returns the
    /// number of files and rows removed.
    pub fn reconcile(&self) -> Result<usize, CacheError> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.dir.join("tmp"))? {
            let entry = entry?;
            if is_older_than(&entry.path(), ORPHAN_GRACE_SECONDS)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        let rows = self.with_db(|c| db::all_files(c))?;
        let mut known = std::collections::HashSet::with_capacity(rows.len());
        for (key, file, bytes) in rows {
            let len = std::fs::metadata(self.dir.join(&file))
                .map(|m| m.len())
                .ok();
            if len != Some(bytes) {
                let _ = std::fs::remove_file(self.dir.join(&file));
                self.with_db(|c| db::delete(c, &key))?;
                removed += 1;
            } else {
                known.insert(file);
            }
        }
        for entry in walkdir::WalkDir::new(self.dir.join("objects"))
            .min_depth(2)
            .max_depth(2)
        {
            let Ok(entry) = entry else { continue };
            let rel = entry
                .path()
                .strip_prefix(&self.dir)
                .expect("under the cache dir");
            let rel = rel.to_string_lossy();
            if !known.contains(rel.as_ref())
                && is_older_than(entry.path(), ORPHAN_GRACE_SECONDS)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn is_older_than(path: &Path, seconds: u64) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() >= seconds)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn etag_of(key: &str) -> String {
    format!("\"{}\"", &hex(&Sha256::digest(key.as_bytes()))[..20])
}
