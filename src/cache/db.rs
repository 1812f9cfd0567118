//! The SQLite side of the cache: schema, upgrades and every statement.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{named_params, Connection, OpenFlags, OptionalExtension, Row as SqlRow};

/// The database file in the cache directory.
pub const FILE_NAME: &str = "cache.db";

const SCHEMA_VERSION: i64 = 3;
/// The whole schema, for a new cache.
const SCHEMA: &str = include_str!("schema.sql");
/// Steps for an existing cache: `UPGRADES[v - 1]` takes it from version v
/// to v + 1.
const UPGRADES: [&str; 2] = [
    include_str!("upgrade/v2.sql"),
    include_str!("upgrade/v3.sql"),
];

/// How long a statement waits for another process's write lock (a `gc`
/// from cron while `serve` runs) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    configure(Connection::open(path)?)
}

/// Opens a database that must exist already: SQLite is not allowed to
/// create it (a mistyped `--cache-dir` is an error, not a new cache).
pub fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    configure(Connection::open_with_flags(path, flags)?)
}

/// Bytes the write-ahead log is cut back to after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

fn configure(conn: Connection) -> rusqlite::Result<Connection> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A checkpoint truncates the write-ahead log to this, so that a burst
    // of writes does not leave it large for good.
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    Ok(conn)
}

/// Brings the schema to [`SCHEMA_VERSION`]: the whole schema for a new
/// database, else one step at a time.
pub fn upgrade(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "cache schema version {version} is newer than this casterpak ({SCHEMA_VERSION})"
            )),
        ));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    } else {
        for step in &UPGRADES[version as usize - 1..] {
            tx.execute_batch(step)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// What a lookup finds of a live object.
pub struct Row {
    pub file: String,
    pub bytes: u64,
}

const LOOKUP: &str = "SELECT file, bytes FROM object WHERE key = :key AND expired = 0";

pub fn lookup(conn: &Connection, key: &str) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached(LOOKUP)?
        .query_row(named_params! {":key": key}, |r| {
            Ok(Row {
                file: r.get(0)?,
                bytes: r.get::<_, i64>(1)? as u64,
            })
        })
        .optional()
}

const INSERT_OBJECT: &str =
    "INSERT OR REPLACE INTO object (key, file, kind, bytes, created, accessed, expired)
     VALUES (:key, :file, :kind, :bytes, :now, :now, 0)";
const INSERT_SOURCE: &str = "INSERT OR REPLACE INTO object_source (key, path, size, mtime_ns)
     VALUES (:key, :path, :size, :mtime_ns)";

pub struct NewObject<'a> {
    pub key: &'a str,
    pub file: &'a str,
    pub kind: &'a str,
    pub bytes: u64,
    /// (path, size, mtime_ns) of each source.
    pub sources: &'a [(String, u64, i64)],
}

pub fn insert(conn: &mut Connection, o: &NewObject, now: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // REPLACE deletes the old row, and with it (cascade) its sources.
    tx.prepare_cached(INSERT_OBJECT)?.execute(named_params! {
        ":key": o.key, ":file": o.file, ":kind": o.kind, ":bytes": o.bytes as i64, ":now": now,
    })?;
    for (path, size, mtime_ns) in o.sources {
        tx.prepare_cached(INSERT_SOURCE)?.execute(named_params! {
            ":key": o.key, ":path": path, ":size": *size as i64, ":mtime_ns": mtime_ns,
        })?;
    }
    tx.commit()
}

const TOUCH: &str = "UPDATE object SET accessed = max(accessed, :at) WHERE key = :key";
const ADD_COUNTER: &str = "INSERT INTO counter (name, value) VALUES (:name, :add)
     ON CONFLICT (name) DO UPDATE SET value = value + :add";

/// Records a batch of accesses and counter increments in one transaction.
pub fn record_use(
    conn: &mut Connection,
    accesses: &[(String, i64)],
    counters: &[(&str, u64)],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (key, at) in accesses {
        tx.prepare_cached(TOUCH)?
            .execute(named_params! {":key": key, ":at": at})?;
    }
    for (name, add) in counters.iter().filter(|(_, add)| *add > 0) {
        tx.prepare_cached(ADD_COUNTER)?
            .execute(named_params! {":name": name, ":add": *add as i64})?;
    }
    tx.commit()
}

/// Counters, by name.
pub fn add_counters(conn: &mut Connection, counters: &[(String, u64)]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (name, add) in counters.iter().filter(|(_, add)| *add > 0) {
        tx.prepare_cached(ADD_COUNTER)?
            .execute(named_params! {":name": name, ":add": *add as i64})?;
    }
    tx.commit()
}

/// The key of the newest live input made from `path`.
pub fn newest_input(conn: &Connection, path: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT o.key FROM object_source s JOIN object o USING (key)
         WHERE s.path = :path AND o.kind = 'input' AND o.expired = 0
         ORDER BY o.created DESC LIMIT 1",
    )?
    .query_row(named_params! {":path": path}, |r| r.get(0))
    .optional()
}

/// Bytes of the live inputs.
pub fn input_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT coalesce(sum(bytes), 0) FROM object WHERE kind = 'input' AND expired = 0",
    )?
    .query_row([], |r| Ok(r.get::<_, i64>(0)? as u64))
}

pub fn begin_download(
    conn: &Connection,
    key: &str,
    path: &str,
    backend: &str,
    total: u64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO download (key, path, backend, bytes_total, bytes_done, pid, started)
         VALUES (:key, :path, :backend, :total, 0, :pid, :now)",
    )?
    .execute(named_params! {
        ":key": key, ":path": path, ":backend": backend, ":total": total as i64,
        ":pid": std::process::id(), ":now": now,
    })?;
    Ok(())
}

pub fn download_progress(conn: &Connection, key: &str, done: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE download SET bytes_done = :done WHERE key = :key")?
        .execute(named_params! {":key": key, ":done": done as i64})?;
    Ok(())
}

pub fn end_download(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM download WHERE key = :key")?
        .execute(named_params! {":key": key})?;
    Ok(())
}

/// A copy in progress, as `stat` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Download {
    pub path: String,
    pub backend: String,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub pid: u32,
    pub started: i64,
}

pub fn downloads(conn: &Connection) -> rusqlite::Result<Vec<Download>> {
    conn.prepare_cached(
        "SELECT path, backend, bytes_total, bytes_done, pid, started FROM download ORDER BY started",
    )?
    .query_map([], |r| {
        Ok(Download {
            path: r.get(0)?,
            backend: r.get(1)?,
            bytes_total: r.get::<_, i64>(2)? as u64,
            bytes_done: r.get::<_, i64>(3)? as u64,
            pid: r.get(4)?,
            started: r.get(5)?,
        })
    })?
    .collect()
}

/// How many rows gc, invalidate and reconcile read (and change) at a time:
/// their memory stays flat in the size of the cache, and each write
/// transaction is short enough not to hold up `serve`'s inserts.
pub const BATCH: usize = 1000;

/// An object as gc, invalidate and reconcile see it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub file: String,
    pub kind: String,
    pub bytes: u64,
    pub created: i64,
    pub accessed: i64,
    pub expired: bool,
}

/// An [`Entry`] from the columns `key, file, kind, bytes, created,
/// accessed, expired` starting at `first`.
fn entry(r: &SqlRow, first: usize) -> rusqlite::Result<Entry> {
    Ok(Entry {
        key: r.get(first)?,
        file: r.get(first + 1)?,
        kind: r.get(first + 2)?,
        bytes: r.get::<_, i64>(first + 3)? as u64,
        created: r.get(first + 4)?,
        accessed: r.get(first + 5)?,
        expired: r.get::<_, i64>(first + 6)? != 0,
    })
}

/// Oldest last-access times gc keeps: an object used before its kind's
/// cutoff is past its TTL.
#[derive(Clone, Copy, Debug)]
pub struct Cutoffs {
    pub output: i64,
    pub input: i64,
}

const ROWS_AFTER: &str = "SELECT key, file, kind, bytes, created, accessed, expired FROM object
     WHERE key > :after AND created < :created_before
     ORDER BY key LIMIT :limit";

/// The next batch of objects made before `created_before`, in key order
/// after the key `after` (keyset pagination over the primary key).
pub fn rows_after(
    conn: &Connection,
    after: &str,
    created_before: i64,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(ROWS_AFTER)?;
    let rows = stmt.query_map(
        named_params! {":after": after, ":created_before": created_before, ":limit": BATCH as i64},
        |r| entry(r, 0),
    )?;
    rows.collect()
}

const DOOMED_AFTER: &str = "SELECT key, file, kind, bytes, created, accessed, expired FROM object
     WHERE key > :after
       AND (expired = 1
            OR accessed < CASE kind WHEN 'input' THEN :input_cutoff ELSE :output_cutoff END)
     ORDER BY key LIMIT :limit";

/// The next batch, in key order after `after`, of objects invalidated or
/// past their TTL.
pub fn doomed_after(
    conn: &Connection,
    after: &str,
    cutoffs: Cutoffs,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(DOOMED_AFTER)?;
    let rows = stmt.query_map(
        named_params! {
            ":after": after, ":input_cutoff": cutoffs.input, ":output_cutoff": cutoffs.output,
            ":limit": BATCH as i64,
        },
        |r| entry(r, 0),
    )?;
    rows.collect()
}

/// Objects and bytes, outputs and inputs apart.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClassTotals {
    pub output_objects: u64,
    pub output_bytes: u64,
    pub input_objects: u64,
    pub input_bytes: u64,
}

const KEPT_TOTALS: &str = "SELECT
       count(*) FILTER (WHERE kind != 'input'),
       coalesce(sum(bytes) FILTER (WHERE kind != 'input'), 0),
       count(*) FILTER (WHERE kind = 'input'),
       coalesce(sum(bytes) FILTER (WHERE kind = 'input'), 0)
     FROM object
     WHERE expired = 0
       AND accessed >= CASE kind WHEN 'input' THEN :input_cutoff ELSE :output_cutoff END";

/// What is neither invalidated nor past its TTL, in one pass of SQLite's.
pub fn kept_totals(conn: &Connection, cutoffs: Cutoffs) -> rusqlite::Result<ClassTotals> {
    conn.prepare_cached(KEPT_TOTALS)?.query_row(
        named_params! {":input_cutoff": cutoffs.input, ":output_cutoff": cutoffs.output},
        |r| {
            Ok(ClassTotals {
                output_objects: r.get::<_, i64>(0)? as u64,
                output_bytes: r.get::<_, i64>(1)? as u64,
                input_objects: r.get::<_, i64>(2)? as u64,
                input_bytes: r.get::<_, i64>(3)? as u64,
            })
        },
    )
}

const LRU_AFTER: &str = "SELECT key, file, kind, bytes, created, accessed, expired FROM object
     WHERE (accessed, key) > (:accessed, :key)
       AND expired = 0
       AND accessed >= CASE kind WHEN 'input' THEN :input_cutoff ELSE :output_cutoff END
     ORDER BY accessed, key LIMIT :limit";

/// The next batch, least recently used first after `(accessed, key)`, of
/// the objects that are neither invalidated nor past their TTL. Walks the
/// `object_accessed` index: no sort, however many objects there are.
pub fn lru_after(
    conn: &Connection,
    after: (i64, &str),
    cutoffs: Cutoffs,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(LRU_AFTER)?;
    let rows = stmt.query_map(
        named_params! {
            ":accessed": after.0, ":key": after.1,
            ":input_cutoff": cutoffs.input, ":output_cutoff": cutoffs.output,
            ":limit": BATCH as i64,
        },
        |r| entry(r, 0),
    )?;
    rows.collect()
}

// `+s.path` keeps SQLite from narrowing the index walk by the GLOB's own
// prefix in place of the keyset bound (it uses one or the other); the
// caller gives the prefix range as the keyset start and `:upper`.
const BY_SOURCE_AFTER: &str =
    "SELECT s.path, o.key, o.file, o.kind, o.bytes, o.created, o.accessed, o.expired
     FROM object_source s JOIN object o ON o.key = s.key
     WHERE (s.path, s.key) > (:path, :key) AND s.path < :upper
       AND +s.path GLOB :pattern
       AND o.created < :created_before
     ORDER BY s.path, s.key LIMIT :limit";

/// Where a walk of the sources matching a GLOB pattern is.
pub struct SourceCursor {
    pub pattern: String,
    /// Above every path the pattern can match.
    pub upper: String,
    /// The last (path, key) read.
    pub path: String,
    pub key: String,
}

/// The next batch of objects made before `created_before` from a source
/// whose path matches the cursor's pattern (SQLite GLOB: `*`, `?`,
/// `[...]`, case-sensitive), in (path, key) order; advances the cursor.
/// An object with two matching sources comes twice unless it is gone by
/// then.
pub fn by_source_after(
    conn: &Connection,
    cursor: &mut SourceCursor,
    created_before: i64,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(BY_SOURCE_AFTER)?;
    let mut rows = stmt.query(named_params! {
        ":path": cursor.path, ":key": cursor.key, ":upper": cursor.upper,
        ":pattern": cursor.pattern, ":created_before": created_before,
        ":limit": BATCH as i64,
    })?;
    let mut entries = Vec::with_capacity(BATCH);
    while let Some(r) = rows.next()? {
        cursor.path = r.get(0)?;
        let e = entry(r, 1)?;
        cursor.key.clone_from(&e.key);
        entries.push(e);
    }
    Ok(entries)
}

const HAS_FILE: &str = "SELECT EXISTS (SELECT 1 FROM object WHERE file = :file)";

/// Those of `files` that no row names, looked up in the `object_file`
/// index within one read transaction (not one per file).
pub fn files_without_rows<'f>(
    conn: &mut Connection,
    files: &'f [String],
) -> rusqlite::Result<Vec<&'f String>> {
    let tx = conn.transaction()?;
    let mut unknown = Vec::new();
    for file in files {
        let known: bool = tx
            .prepare_cached(HAS_FILE)?
            .query_row(named_params! {":file": file}, |r| r.get(0))?;
        if !known {
            unknown.push(file);
        }
    }
    tx.commit()?;
    Ok(unknown)
}

const EXPIRE: &str = "UPDATE object SET expired = 1 WHERE key = :key AND expired = 0";

/// Marks expired, in one transaction; returns how many were not already.
pub fn expire(conn: &mut Connection, entries: &[Entry]) -> rusqlite::Result<usize> {
    if entries.is_empty() {
        return Ok(0);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut changed = 0;
    for e in entries {
        changed += tx
            .prepare_cached(EXPIRE)?
            .execute(named_params! {":key": e.key})?;
    }
    tx.commit()?;
    Ok(changed)
}

const DELETE_IF_FILE: &str =
    "DELETE FROM object WHERE key = :key AND file = :file AND created = :created";

/// Deletes rows in one transaction, each only if it is still the row that
/// was read (a concurrent `serve` may have made the object again
/// meanwhile); returns how many went.
pub fn delete_entries(conn: &mut Connection, entries: &[Entry]) -> rusqlite::Result<usize> {
    // No write lock for nothing: reconcile calls this for every batch.
    if entries.is_empty() {
        return Ok(0);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut deleted = 0;
    for e in entries {
        deleted += tx
            .prepare_cached(DELETE_IF_FILE)?
            .execute(named_params! {":key": e.key, ":file": e.file, ":created": e.created})?;
    }
    tx.commit()?;
    Ok(deleted)
}

/// Objects, bytes, expired objects and access times of one kind.
#[derive(Debug)]
pub struct KindTotals {
    pub objects: u64,
    pub bytes: u64,
    pub expired: u64,
    pub oldest_access: i64,
    pub newest_access: i64,
}

// Summed here rather than by GROUP BY, which SQLite runs either through
// an index and a table lookup per row or by sorting every row: a plain
// scan of the table is several times faster.
const KIND_COLUMNS: &str = "SELECT kind, bytes, expired, accessed FROM object";

/// Totals per kind, in one scan of the table that holds one row at a time.
pub fn kind_totals(conn: &Connection) -> rusqlite::Result<BTreeMap<String, KindTotals>> {
    let mut stmt = conn.prepare_cached(KIND_COLUMNS)?;
    let mut rows = stmt.query([])?;
    let mut totals: BTreeMap<String, KindTotals> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let kind = r.get_ref(0)?.as_str()?;
        let (bytes, expired, accessed) = (r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get(3)?);
        if !totals.contains_key(kind) {
            let first = KindTotals {
                objects: 0,
                bytes: 0,
                expired: 0,
                oldest_access: accessed,
                newest_access: accessed,
            };
            totals.insert(kind.to_string(), first);
        }
        let t = totals.get_mut(kind).expect("inserted above");
        t.objects += 1;
        t.bytes += bytes as u64;
        t.expired += u64::from(expired != 0);
        t.oldest_access = t.oldest_access.min(accessed);
        t.newest_access = t.newest_access.max(accessed);
    }
    Ok(totals)
}

const COUNTERS: &str = "SELECT name, value FROM counter";

pub fn counters(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(COUNTERS)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}

const TOP_SOURCES: &str =
    "SELECT s.path, count(*), sum(o.bytes) FROM object_source s JOIN object o USING (key)
     GROUP BY s.path ORDER BY sum(o.bytes) DESC, s.path LIMIT :limit";

/// Sources with the most cached bytes: (path, objects, bytes).
pub fn top_sources(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<(String, u64, u64)>> {
    let mut stmt = conn.prepare_cached(TOP_SOURCES)?;
    let rows = stmt.query_map(named_params! {":limit": limit as i64}, |r| {
        Ok((
            r.get(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
        ))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        upgrade(&mut conn).unwrap();
        conn
    }

    fn indexes(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .unwrap();
        let names = stmt.query_map([], |r| r.get(0)).unwrap();
        names.collect::<rusqlite::Result<_>>().unwrap()
    }

    #[test]
    fn a_version_1_cache_is_upgraded_to_the_new_schema() {
        let fresh = new_db();
        // Version 1 was this schema without the two indexes of step v2,
        // and with one that step drops, and without step v3's table.
        let mut old = Connection::open_in_memory().unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute_batch(
            "DROP INDEX object_accessed; DROP INDEX object_file; DROP TABLE download;
             CREATE INDEX object_kind_accessed ON object (kind, accessed);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        upgrade(&mut old).unwrap();
        assert_eq!(indexes(&old), indexes(&fresh));
        let tables = |c: &Connection| -> Vec<String> {
            let mut stmt = c
                .prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' ORDER BY name")
                .unwrap();
            let sql = stmt.query_map([], |r| r.get(0)).unwrap();
            sql.collect::<rusqlite::Result<_>>().unwrap()
        };
        assert_eq!(tables(&old), tables(&fresh));
        let version: i64 = old
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // Upgrading again does nothing.
        upgrade(&mut old).unwrap();
    }

    /// SQLite's plan for `sql` with `params` bound, one line per step.
    fn plan(conn: &Connection, sql: &str, params: &[(&str, &dyn rusqlite::ToSql)]) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(params, |r| r.get::<_, String>(3)).unwrap();
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
            .join("\n")
    }

    /// The batched walks seek to where the last batch ended and read in
    /// index order: linear in the cache in all, with no sort to hold.
    #[test]
    fn the_batched_walks_seek_along_an_index() {
        let conn = new_db();
        let lru = plan(
            &conn,
            LRU_AFTER,
            named_params! {
                ":accessed": 0, ":key": "", ":input_cutoff": 0, ":output_cutoff": 0, ":limit": 10,
            },
        );
        assert!(
            lru.contains("USING INDEX object_accessed ((accessed,key)>(?,?))"),
            "{lru}"
        );
        let doomed = plan(
            &conn,
            DOOMED_AFTER,
            named_params! {":after": "", ":input_cutoff": 0, ":output_cutoff": 0, ":limit": 10},
        );
        assert!(doomed.contains("USING PRIMARY KEY (key>?)"), "{doomed}");
        let rows = plan(
            &conn,
            ROWS_AFTER,
            &[(":after", &""), (":created_before", &0), (":limit", &10)],
        );
        assert!(rows.contains("USING PRIMARY KEY (key>?)"), "{rows}");
        let by_source = plan(
            &conn,
            BY_SOURCE_AFTER,
            &[
                (":path", &"films/"),
                (":key", &""),
                (":upper", &"films/\u{10FFFF}"),
                (":pattern", &"films/*.mp4"),
                (":created_before", &0),
                (":limit", &10),
            ],
        );
        assert!(
            by_source.contains("object_source_path ((path,key)>(?,?) AND path<?)"),
            "{by_source}"
        );
        let has_file = plan(&conn, HAS_FILE, named_params! {":file": "objects/00/x.ts"});
        assert!(
            has_file.contains("USING COVERING INDEX object_file (file=?)"),
            "{has_file}"
        );
        for p in [lru, doomed, rows, by_source] {
            assert!(!p.contains("TEMP B-TREE"), "{p}");
        }
    }
}
