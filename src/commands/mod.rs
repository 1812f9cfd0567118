//! One module per subcommand, each with its `Args` and `run`, and the
//! helpers they share. Subcommands do not use each other.

pub mod docs;
pub mod gc;
pub mod invalidate;
pub mod master;
pub mod package;
pub mod serve;
pub mod stat;
pub mod token;

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use crate::cache::{Cache, Clock};

/// How long a command waits, before it exits, for the indexes it read to
/// be stored.
pub const INDEX_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
use crate::config::Config;

/// The cache of `config`, opened (and created if needed), for commands
/// that fill it.
pub fn open_cache(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Cache> {
    let cache = Cache::open(&config.cache.dir, clock)
        .with_context(|| format!("opening the cache in {}", config.cache.dir.display()))?;
    Ok(cache
        .with_fsync(config.cache.fsync)
        .with_wait(config.server.wait_timeout.as_std()))
}

/// The existing cache of `config`, for commands that only look at it or
/// clean it: a directory without a cache is an error, not a new cache.
pub fn open_existing_cache(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Cache> {
    Ok(Cache::open_existing(&config.cache.dir, clock)?)
}

/// Prints `report` as JSON when `json`, else the text `human` makes.
pub fn print_report(
    json: bool,
    report: &impl serde::Serialize,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        print(&format!("{}\n", serde_json::to_string_pretty(report)?))
    } else {
        print(&human())
    }
}

/// Writes `text` to stdout; a closed pipe (`casterpak ... | head`) is not
/// an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
