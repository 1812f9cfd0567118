//! `casterpak invalidate`: marks cached objects expired (the next request
//! makes them again, the next gc deletes them), or deletes them now.

use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::cache::Clock;
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Source paths (relative to the media root) whose objects go; globs
    /// with `*`, `?` and `[...]`, e.g. 'films/*.mp4'.
    #[arg(value_name = "PATTERN")]
    patterns: Vec<String>,
    /// Every object.
    #[arg(long, conflicts_with = "patterns")]
    all: bool,
    /// Only objects made longer ago than this (`90s`, `30m`, `12h`, `3d`).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration_arg)]
    older_than: Option<u64>,
    /// Delete now instead of marking expired.
    #[arg(long)]
    hard: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(
    args: Args,
    config: &Config,
    clock: std::sync::Arc<dyn Clock>,
) -> anyhow::Result<ExitCode> {
    if args.patterns.is_empty() && !args.all && args.older_than.is_none() {
        bail!("say what to invalidate: PATTERN..., --all or --older-than DURATION");
    }
    let cache = super::open_existing_cache(config, clock)?;
    let count = cache
        .invalidate(&args.patterns, args.all, args.older_than, args.hard)
        .context("invalidating")?;
    let action = if args.hard { "deleted" } else { "expired" };
    if args.json {
        super::print(&format!(
            "{}\n",
            serde_json::json!({ action: count, "hard": args.hard })
        ))?;
    } else {
        super::print(&format!("{action} {count} objects\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}
