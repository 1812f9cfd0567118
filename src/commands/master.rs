//! `casterpak master <URL-PATH>`: prints the master playlist that `serve`
//! would answer for a file path or a csmil path, without a server.

use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::cache::Clock;
use crate::config::Config;
use crate::origin::{master_path, Origin};

#[derive(clap::Args)]
pub struct Args {
    /// A path as in the URL, with or without the prefix and `master.m3u8`:
    /// `films/a.mp4`, `/i/films/a_,1500k,600k,.mp4.csmil/master.m3u8`.
    #[arg(value_name = "URL-PATH")]
    path: String,
}

pub fn run(
    args: Args,
    config: Config,
    clock: std::sync::Arc<dyn Clock>,
) -> anyhow::Result<ExitCode> {
    let path = master_path(&config, &args.path);
    let cache = crate::commands::open_cache(&config, clock)?;
    let origin = Origin::new(config, cache)?;
    let answer = match origin.answer(&path) {
        Ok(a) => a,
        Err(e) => bail!("{path}: {e}"),
    };
    let text = answer.object.into_bytes().context("reading the cache")?;
    origin.finish(super::INDEX_WRITE_WAIT)?;
    super::print(&String::from_utf8_lossy(&text))?;
    Ok(ExitCode::SUCCESS)
}
