//! The SQLite side of the cache: schema, upgrades and every statement.

use std::path::Path;
use std::time::Duration;

use rusqlite::{named_params, Connection, OptionalExtension};

/// The database file in the cache directory.
pub const FILE_NAME: &str = "cache.db";

const SCHEMA_VERSION: i64 = 2;
/// The whole schema, for a new cache.
const SCHEMA: &str = include_str!("schema.sql");
/// Steps for an existing cache: `UPGRADES[v - 1]` takes it from version v
/// to v + 1.
const UPGRADES: [&str; 1] = [include_str!("upgrade/v2.sql")];

/// How long a statement waits for another process's write lock (a `gc`
/// from cron while `serve` runs) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    configure(Connection::open(path)?)
}

fn configure(conn: Connection) -> rusqlite::Result<Connection> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
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

const DELETE_OBJECT: &str = "DELETE FROM object WHERE key = :key";

pub fn delete(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(DELETE_OBJECT)?
        .execute(named_params! {":key": key})?;
    Ok(())
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

const ALL_FILES: &str = "SELECT key, file, bytes FROM object";

/// Every row's key, file and size, for reconciling with the disk.
pub fn all_files(conn: &Connection) -> rusqlite::Result<Vec<(String, String, u64)>> {
    let mut stmt = conn.prepare_cached(ALL_FILES)?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
    })?;
    rows.collect()
}

/// An object as gc, stat and invalidate see it.
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

const ALL_ENTRIES: &str =
    "SELECT key, file, kind, bytes, created, accessed, expired FROM object ORDER BY accessed";

/// Every object, least recently used first.
pub fn entries(conn: &Connection) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(ALL_ENTRIES)?;
    let rows = stmt.query_map([], |r| {
        Ok(Entry {
            key: r.get(0)?,
            file: r.get(1)?,
            kind: r.get(2)?,
            bytes: r.get::<_, i64>(3)? as u64,
            created: r.get(4)?,
            accessed: r.get(5)?,
            expired: r.get::<_, i64>(6)? != 0,
        })
    })?;
    rows.collect()
}

const KEYS_BY_SOURCE_GLOB: &str = "SELECT DISTINCT key FROM object_source WHERE path GLOB :pattern";

/// Keys of objects made from a source whose path matches `pattern`
/// (SQLite GLOB: `*`, `?`, `[...]`, case-sensitive).
pub fn keys_by_source(conn: &Connection, pattern: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(KEYS_BY_SOURCE_GLOB)?;
    let rows = stmt.query_map(named_params! {":pattern": pattern}, |r| r.get(0))?;
    rows.collect()
}

const EXPIRE: &str = "UPDATE object SET expired = 1 WHERE key = :key";

pub fn expire(conn: &mut Connection, keys: &[String]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for key in keys {
        tx.prepare_cached(EXPIRE)?
            .execute(named_params! {":key": key})?;
    }
    tx.commit()
}

const DELETE_IF_FILE: &str =
    "DELETE FROM object WHERE key = :key AND file = :file AND created = :created";

/// Deletes rows, each only if it is still the row that was read (a
/// concurrent `serve` may have made the object again meanwhile).
pub fn delete_entries(conn: &mut Connection, entries: &[Entry]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for e in entries {
        tx.prepare_cached(DELETE_IF_FILE)?
            .execute(named_params! {":key": e.key, ":file": e.file, ":created": e.created})?;
    }
    tx.commit()
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
        // Version 1 was this schema without the two indexes of step v2.
        let mut old = Connection::open_in_memory().unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute_batch(
            "DROP INDEX object_accessed; DROP INDEX object_file; PRAGMA user_version = 1;",
        )
        .unwrap();
        upgrade(&mut old).unwrap();
        assert_eq!(indexes(&old), indexes(&fresh));
        let version: i64 = old
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // Upgrading again does nothing.
        upgrade(&mut old).unwrap();
    }
}
