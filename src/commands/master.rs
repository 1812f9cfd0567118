//! `casterpak master <URL-PATH>`: prints the master playlist that `serve`
//! would answer for a file path or a csmil path, without a server.

use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::cache::Clock;
use crate::commands::origin::Origin;
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// A path as in the URL, with or without the prefix and `master.m3u8`:
    /// `films/a.mp4`, `/i/films/a_,1500k,600k,.mp4.csmil/master.m3u8`.
    #[arg(value_name = "URL-PATH")]
    path: String,
}

/// The full URL path of a master playlist for `path`.
pub fn master_path(config: &Config, path: &str) -> String {
    let prefix = &config.server.prefix;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut full = if path.starts_with(prefix.as_str()) {
        path.to_string()
    } else {
        format!("{prefix}{}", path.trim_start_matches('/'))
    };
    if !full.ends_with("/master.m3u8") {
        full = format!("{}/master.m3u8", full.trim_end_matches('/'));
    }
    full
}

pub fn run(
    args: Args,
    config: Config,
    clock: std::sync::Arc<dyn Clock>,
) -> anyhow::Result<ExitCode> {
    let path = master_path(&config, &args.path);
    let cache = crate::commands::open_cache(&config, clock)?;
    let origin = Origin::new(config, cache);
    let answer = match origin.answer(&path) {
        Ok(a) => a,
        Err(e) => bail!("{path}: {e}"),
    };
    let text = answer.object.into_bytes().context("reading the cache")?;
    origin.cache().flush_use()?;
    super::print(&String::from_utf8_lossy(&text))?;
    Ok(ExitCode::SUCCESS)
}
