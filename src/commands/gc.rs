//! `casterpak gc`: removes cached objects past their TTL or over a size
//! cap (least recently used first), invalidated ones, and orphans. Safe to
//! run from cron while `serve` runs.

use std::process::ExitCode;

use anyhow::Context;

use crate::cache::{Clock, GcReport};
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(
    args: Args,
    config: &Config,
    clock: std::sync::Arc<dyn Clock>,
) -> anyhow::Result<ExitCode> {
    let cache = super::open_existing_cache(config, clock)?;
    let report = cache
        .gc(&super::gc_policy(config), args.dry_run)
        .context("collecting garbage")?;
    super::print_report(args.json, &report, || human(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn human(r: &GcReport) -> String {
    let mut out = String::new();
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    if r.dry_run {
        for d in &r.deleted {
            out.push_str(&format!(
                "{verb} {} ({}, {} bytes, {})\n",
                d.file, d.kind, d.bytes, d.reason
            ));
        }
    }
    out.push_str(&format!(
        "{verb} {} objects ({} bytes); kept {} objects ({} bytes); {} orphans removed\n",
        r.deleted.len(),
        r.deleted_bytes,
        r.kept_objects,
        r.kept_bytes,
        r.orphans_removed
    ));
    out
}
