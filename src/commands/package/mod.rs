//! `casterpak package`: with `--out DIR`, a static HLS package of MP4
//! files ([`directory`]); without, pre-warming the serve cache with every
//! playlist and segment of source or csmil paths ([`prewarm`]).

mod directory;
mod prewarm;

use std::process::ExitCode;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cache::Clock;
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// With --out: MP4, MOV, M4A or M4V files, the N-th is rendition N.
    /// Without: paths under the media root as in serve's URLs, files
    /// (`films/a.mp4`) or csmil paths (`films/a_,1500k,600k,.mp4.csmil`).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Directory to create with a static package; without it, the serve
    /// cache is filled instead.
    #[arg(short, long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
    /// Target segment duration in seconds, segments start at keyframes
    /// (default: media.segment_duration, 6).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    segment_duration: Option<f64>,
    /// Replace DIR if it already exists.
    #[arg(long)]
    force: bool,
    /// Segments made in parallel (default: CPUs, at most 4).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
    /// What to make: MPEG-TS HLS, CMAF (fMP4 HLS and a DASH MPD), or both
    /// (with --out, CMAF in DIR/cmaf).
    #[arg(long, value_enum, default_value_t = Format::Ts)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ts,
    Cmaf,
    Both,
}

impl Format {
    fn ts(self) -> bool {
        self != Format::Cmaf
    }

    fn cmaf(self) -> bool {
        self != Format::Ts
    }
}

impl Args {
    fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
            .max(1)
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be between 0.1 and 3600 seconds".into()),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(args: Args, mut config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    if let Some(seconds) = args.segment_duration {
        config.media.segment_duration = seconds;
    }
    match args.out.clone() {
        Some(out) if out.exists() && !out.is_dir() => anyhow::bail!(
            "--out {}: a file, not a package directory; nothing was changed",
            out.display()
        ),
        Some(out) => directory::run(args, &out, &config),
        None => prewarm::run(args, config, clock),
    }
}

/// A bar on stderr when it is a terminal; hidden in scripts and pipes.
fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} segments {elapsed} (eta {eta})")
            .expect("valid template"),
    );
    bar
}
