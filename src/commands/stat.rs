//! `casterpak stat`: what the cache holds.

use std::process::ExitCode;

use anyhow::Context;

use crate::cache::{Clock, Stats};
use crate::config::Config;
use crate::dates::http_date;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(
    args: Args,
    config: &Config,
    clock: std::sync::Arc<dyn Clock>,
) -> anyhow::Result<ExitCode> {
    let cache = super::open_existing_cache(config, clock)?;
    let stats = cache.stats().context("reading the cache")?;
    super::print_report(args.json, &stats, || human(&stats))?;
    Ok(ExitCode::SUCCESS)
}

fn human(s: &Stats) -> String {
    let mut out = format!(
        "cache {}\n\n{:<10} {:>9} {:>14} {:>8}\n",
        s.dir, "kind", "objects", "bytes", "expired"
    );
    for (kind, k) in &s.by_kind {
        out.push_str(&format!(
            "{kind:<10} {:>9} {:>14} {:>8}\n",
            k.objects, k.bytes, k.expired
        ));
    }
    out.push_str(&format!(
        "{:<10} {:>9} {:>14}\n\n",
        "total", s.objects, s.bytes
    ));
    let when = |t: Option<i64>| t.map_or("-".to_string(), http_date);
    out.push_str(&format!(
        "oldest access  {}\nnewest access  {}\n",
        when(s.oldest_access),
        when(s.newest_access)
    ));
    out.push_str(&format!("hits {}  misses {}\n", s.hits, s.misses));
    if !s.fetched.is_empty() {
        out.push_str("\nfetched from remote sources\n");
        for f in &s.fetched {
            out.push_str(&format!(
                "{:>14} bytes {:>9} requests  {}\n",
                f.bytes, f.requests, f.backend
            ));
        }
    }
    if !s.downloads.is_empty() {
        out.push_str("\ncopies in progress\n");
        for d in &s.downloads {
            out.push_str(&format!(
                "{:>14} of {:>14} bytes  {}\n",
                d.bytes_done, d.bytes_total, d.path
            ));
        }
    }
    if !s.top_sources.is_empty() {
        out.push_str("\ntop sources by bytes\n");
        for t in &s.top_sources {
            out.push_str(&format!("{:>14} {:>7}  {}\n", t.bytes, t.objects, t.path));
        }
    }
    out
}
