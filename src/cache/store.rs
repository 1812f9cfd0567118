//! Steps 1-3 of an object's lifecycle (see the module above): make it into
//! a temporary file, rename it into place, record it. When the cache cannot
//! take it, the object is made into memory instead and still answered.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{db, hex, Body, Cache, CacheError, Failure, ObjectSpec};

/// Bytes gathered before each write to the temporary file: large writes,
/// and a bounded amount of memory per object being made.
const WRITE_BUFFER_BYTES: usize = 256 << 10;

/// A failure to store is logged at most this often.
const STORE_WARNING_INTERVAL: Duration = Duration::from_secs(60);

impl Cache {
    /// Makes the object of `spec` and stores it; returns its body, length
    /// and what `make` returned.
    pub(super) fn make_and_store<T, E>(
        &self,
        spec: &ObjectSpec,
        make: &impl Fn(&mut dyn Write) -> Result<T, E>,
    ) -> Result<(Body, u64, T), Failure<E>> {
        let started = Instant::now();
        let stored = match self.make_into_file(spec, make) {
            Ok(Ok(stored)) => Some(stored),
            Ok(Err(e)) => return Err(Failure::Make(e)),
            Err(e) => {
                self.warn_not_stored(spec, &e);
                None
            }
        };
        let (body, len, made) = match stored {
            Some(stored) => stored,
            // The cache could not take it: make it again, into memory.
            None => {
                let mut bytes = Vec::new();
                let made = make(&mut bytes).map_err(Failure::Make)?;
                let len = bytes.len() as u64;
                (Body::Bytes(Arc::new(bytes)), len, made)
            }
        };
        tracing::debug!(
            "{} of {len} bytes made and stored in {:.2} ms",
            spec.kind,
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok((body, len, made))
    }

    /// Makes the object of `spec` into the cache, or nothing: no second
    /// attempt into memory (an input copy is not worth holding there).
    /// `Err`: the cache failed; `Ok(Err)`: `make` did.
    pub fn store<E>(
        &self,
        spec: &ObjectSpec,
        make: impl Fn(&mut dyn Write) -> Result<(), E>,
    ) -> Result<Result<File, E>, CacheError> {
        Ok(match self.make_into_file(spec, &make)? {
            Ok((Body::File(file), _, ())) => Ok(Arc::try_unwrap(file)
                .or_else(|shared| shared.try_clone())
                .map_err(|e| {
                    CacheError::io(format!("reopening the {} just stored", spec.kind), e)
                })?),
            Ok((Body::Bytes(_), _, ())) => unreachable!("made into a file"),
            Err(e) => Err(e),
        })
    }

    /// `Err`: the cache failed (and nothing is left of the attempt);
    /// `Ok(Err)`: `make` failed on its own.
    fn make_into_file<T, E>(
        &self,
        spec: &ObjectSpec,
        make: &impl Fn(&mut dyn Write) -> Result<T, E>,
    ) -> Result<Result<(Body, u64, T), E>, CacheError> {
        let hash = hex(&Sha256::digest(spec.key.as_bytes()));
        let rel = format!("objects/{}/{hash}.{}", &hash[..2], spec.ext);
        let final_path = self.dir.join(&rel);
        let temp = TempFile::create(self.dir.join("tmp").join(format!(
            "{hash}.{}.{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        )))?;
        let mut writer = Recording::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, &temp.file));
        let made = match make(&mut writer) {
            Ok(made) => made,
            // A write that failed is the cache's failure, whatever `make`
            // made of it.
            Err(e) => return writer.into_error(&temp).map(|()| Err(e)),
        };
        let len = writer.written;
        writer.finish(&temp)?;
        if self.fsync {
            temp.file
                .sync_data()
                .map_err(|e| CacheError::io(format!("fsync {}", temp.path.display()), e))?;
        }
        let dir = final_path.parent().expect("objects/<hh>");
        std::fs::create_dir_all(dir)
            .map_err(|e| CacheError::io(format!("creating {}", dir.display()), e))?;
        let file = temp.rename(&final_path)?;
        let sources: Vec<(String, u64, i64)> = spec
            .sources
            .iter()
            .map(|s| (s.rel.clone(), s.size, s.mtime_ns))
            .collect();
        let row = db::NewObject {
            key: &spec.key,
            file: &rel,
            kind: spec.kind,
            bytes: len,
            sources: &sources,
        };
        let now = self.clock.now();
        // The file is in place and open: a failed insert leaves an orphan
        // for reconcile, and this answer is still whole.
        if let Err(e) = self.with_db(|c| db::insert(c, &row, now)) {
            self.warn_not_stored(spec, &e);
        }
        Ok(Ok((Body::File(Arc::new(file)), len, made)))
    }

    fn warn_not_stored(&self, spec: &ObjectSpec, e: &CacheError) {
        let mut last = self.store_warned.lock().expect("store warning lock");
        if last.is_none_or(|t| t.elapsed() >= STORE_WARNING_INTERVAL) {
            *last = Some(Instant::now());
            tracing::error!(
                "not cached, still answered (logged once a minute): {} {}: {e}",
                spec.kind,
                spec.key
            );
        }
    }
}

/// A temporary file, removed unless renamed into place.
struct TempFile {
    path: std::path::PathBuf,
    file: File,
    renamed: bool,
}

impl TempFile {
    fn create(path: std::path::PathBuf) -> Result<TempFile, CacheError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| CacheError::io(format!("creating {}", path.display()), e))?;
        Ok(TempFile {
            path,
            file,
            renamed: false,
        })
    }

    fn rename(mut self, to: &std::path::Path) -> Result<File, CacheError> {
        std::fs::rename(&self.path, to)
            .map_err(|e| CacheError::io(format!("storing {}", to.display()), e))?;
        self.renamed = true;
        self.file
            .try_clone()
            .map_err(|e| CacheError::io(format!("reopening {}", to.display()), e))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A writer that counts what it was given and remembers the first error,
/// so that a failed write is told apart from a failure of the maker.
struct Recording<W: Write> {
    inner: W,
    written: u64,
    error: Option<std::io::Error>,
}

impl<W: Write> Recording<W> {
    fn new(inner: W) -> Self {
        Recording {
            inner,
            written: 0,
            error: None,
        }
    }

    fn finish(mut self, temp: &TempFile) -> Result<(), CacheError> {
        if let Err(e) = self.inner.flush() {
            self.error.get_or_insert(e);
        }
        self.into_error(temp)
    }

    /// `Err` when a write failed.
    fn into_error(self, temp: &TempFile) -> Result<(), CacheError> {
        match self.error {
            Some(e) => Err(CacheError::io(
                format!("writing {}", temp.path.display()),
                e,
            )),
            None => Ok(()),
        }
    }
}

impl<W: Write> Recording<W> {
    /// Keeps the first error, and hands the caller one of the same kind.
    fn remember(&mut self, e: std::io::Error) -> std::io::Error {
        let copy = std::io::Error::new(e.kind(), e.to_string());
        self.error.get_or_insert(e);
        copy
    }
}

impl<W: Write> Write for Recording<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => Err(self.remember(e)),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.remember(e))
    }
}
