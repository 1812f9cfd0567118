-- The cache index of casterpak, schema version 3 (PRAGMA user_version).
-- One row per object file under the cache directory; see src/cache/mod.rs
-- for the order in which files and rows are written and removed. A new
-- cache is made from this file; an older one is brought here by the steps
-- in upgrade/.

CREATE TABLE object (
    -- What the object is, in full: format version, kind, parameters and the
    -- identity (path, size, mtime) of every source it was made from.
    key TEXT PRIMARY KEY NOT NULL,
    -- Its file, relative to the cache directory.
    file TEXT NOT NULL,
    -- 'playlist', 'segment', 'index' or 'input'.
    kind TEXT NOT NULL,
    -- Size of the file in bytes.
    bytes INTEGER NOT NULL,
    -- Unix time (seconds) when it was made.
    created INTEGER NOT NULL,
    -- Unix time (seconds) of its last use; hits are recorded in batches, so
    -- this can lag by a few seconds.
    accessed INTEGER NOT NULL,
    -- 1 once invalidated: never served again, removed by the next gc.
    expired INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- gc walks objects least recently used first (size caps, free space).
CREATE INDEX object_accessed ON object (accessed);
-- reconcile asks, of each file it finds on disk, whether a row names it.
CREATE INDEX object_file ON object (file);

-- The sources of each object (a multi-rendition master has several).
CREATE TABLE object_source (
    -- object.key
    key TEXT NOT NULL REFERENCES object (key) ON DELETE CASCADE,
    -- Source path relative to the media root, as in the URL.
    path TEXT NOT NULL,
    -- Its size in bytes when the object was made; a source that changes
    -- gets new objects.
    size INTEGER NOT NULL,
    -- Its modification time (ns since the epoch) when the object was made.
    mtime_ns INTEGER NOT NULL,
    PRIMARY KEY (key, path)
) WITHOUT ROWID;

CREATE INDEX object_source_path ON object_source (path);

-- Persisted counters, since the cache was created.
CREATE TABLE counter (
    -- 'hits', 'misses', or 'fetched_bytes <prefix>' and
    -- 'fetched_requests <prefix>' of a remote backend.
    name TEXT PRIMARY KEY NOT NULL,
    -- How many.
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Copies of remote inputs in progress (bytes done), for `stat`.
CREATE TABLE download (
    -- object.key the copy will have.
    key TEXT PRIMARY KEY NOT NULL,
    -- Source path, as in the URL.
    path TEXT NOT NULL,
    -- Prefix of the backend it comes from.
    backend TEXT NOT NULL,
    -- Bytes in all, and copied so far.
    bytes_total INTEGER NOT NULL,
    bytes_done INTEGER NOT NULL,
    -- The process copying it: a row of a process that is gone is stale.
    pid INTEGER NOT NULL,
    -- Unix time (seconds) when it started.
    started INTEGER NOT NULL
) WITHOUT ROWID;
