//! `casterpak gc`: removes cached objects past their TTL, over a size cap
//! or while free space is below `cache.min_free` (least recently used
//! first), invalidated ones, and orphans. Safe to run from cron while
//! `serve` runs.

use std::io::{BufWriter, StdoutLock, Write};
use std::process::ExitCode;

use anyhow::Context;

use crate::cache::{Clock, GcDeletion, GcReport};
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// List what would be deleted and count orphans; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON report on stdout (counts and bytes by reason).
    #[arg(long)]
    json: bool,
}

pub fn run(
    args: Args,
    config: &Config,
    clock: std::sync::Arc<dyn Clock>,
) -> anyhow::Result<ExitCode> {
    let cache = super::open_existing_cache(config, clock)?;
    let mut listing = (args.dry_run && !args.json).then(Listing::new);
    let report = cache
        .gc_listing(&config.gc_policy(), args.dry_run, |d| {
            if let Some(listing) = &mut listing {
                listing.line(d);
            }
        })
        .context("collecting garbage")?;
    if let Some(listing) = listing {
        listing.finish()?;
    }
    super::print_report(args.json, &report, || human(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// A dry run's list, written as gc goes rather than gathered: a million
/// objects are a million lines, not a million entries in memory.
struct Listing {
    out: BufWriter<StdoutLock<'static>>,
    /// The first write error; a closed pipe (`gc --dry-run | head`) ends
    /// the list quietly.
    error: Option<std::io::Error>,
}

impl Listing {
    fn new() -> Self {
        Listing {
            out: BufWriter::new(std::io::stdout().lock()),
            error: None,
        }
    }

    fn line(&mut self, d: &GcDeletion) {
        if self.error.is_none() {
            let written = writeln!(
                self.out,
                "would delete {} ({}, {} bytes, {})",
                d.file,
                d.kind,
                d.bytes,
                d.reason.as_str()
            );
            self.error = written.err();
        }
    }

    fn finish(mut self) -> anyhow::Result<()> {
        let result = match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        };
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        }
    }
}

fn human(r: &GcReport) -> String {
    let (verb, orphans) = if r.dry_run {
        ("would delete", "orphans found")
    } else {
        ("deleted", "orphans removed")
    };
    let b = &r.by_reason;
    let mut out = format!(
        "{verb} {} objects ({} bytes): {} invalidated, {} past their TTL, {} over a size cap, \
         {} for free space\nkept {} objects ({} bytes); {} {orphans}\n",
        r.deleted_objects,
        r.deleted_bytes,
        b.invalidated.objects,
        b.ttl.objects,
        b.size.objects,
        b.free_space.objects,
        r.kept_objects,
        r.kept_bytes,
        r.orphans,
    );
    if r.min_free_bytes > 0 {
        out.push_str(&format!(
            "free space {} bytes when gc started; cache.min_free {} bytes\n",
            r.free_bytes, r.min_free_bytes
        ));
    }
    out
}
