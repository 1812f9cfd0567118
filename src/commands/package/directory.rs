//! `casterpak package INPUT... --out DIR`: a complete static package that
//! any web server can serve: MPEG-TS HLS (master, media playlists,
//! segments), CMAF (fMP4 HLS and a DASH MPD over the same segments), or
//! both (CMAF in `DIR/cmaf`).
//!
//! The package is built in a hidden sibling directory and renamed into
//! place at the end, so a failure or a kill never leaves a partial package
//! under the requested name.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::packager::fmp4::TrackKind;
use crate::packager::rendition::Rendition;
use crate::packager::{cmaf, hls};

use super::{progress_bar, Args, Format};
use crate::config::Config;

pub fn run(args: Args, out: &Path, config: &Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if out.exists() && !args.force {
        bail!(
            "{} already exists (use --force to replace it)",
            out.display()
        );
    }
    let segment_seconds = args
        .segment_duration
        .unwrap_or(config.media.segment_duration);
    let inputs: Vec<PathBuf> = args.inputs.iter().map(PathBuf::from).collect();
    let renditions = open_all(&inputs, segment_seconds)?;
    if args.format.ts() {
        for (r, path) in renditions.iter().zip(&inputs) {
            if let Some(why) = r.index().ts_refusal() {
                bail!("{}: {why}; give --format cmaf", path.display());
            }
        }
    }
    let staging = Staging::create(out)?;
    let cmaf_dir = match args.format {
        Format::Cmaf => staging.path().to_owned(),
        _ => staging.path().join("cmaf"),
    };
    if args.format.ts() {
        write_playlists(&renditions, staging.path())?;
    }
    if args.format.cmaf() {
        fs::create_dir_all(&cmaf_dir)
            .with_context(|| format!("creating {}", cmaf_dir.display()))?;
        write_cmaf_manifests(&renditions, &cmaf_dir)?;
    }
    let jobs = args.jobs();
    let mut work = Vec::new();
    for (n, r) in renditions.iter().enumerate() {
        for k in 0..r.segment_count() {
            if args.format.ts() {
                work.push(Job::Ts { n, k });
            }
            if args.format.cmaf() {
                for track in TrackKind::all(r.index()) {
                    work.push(Job::Fragment { n, k, track });
                }
                if r.has_trick_play() {
                    work.push(Job::Trick { n, k });
                }
            }
        }
    }
    let dirs = Dirs {
        ts: staging.path(),
        cmaf: &cmaf_dir,
    };
    let bytes = write_segments(&renditions, &work, &dirs, jobs)?;
    staging.commit(out)?;
    let summary = summary(out, &renditions, &bytes, started.elapsed().as_secs_f64());
    if args.json {
        super::super::print(&format!("{summary:#}\n"))?;
    } else {
        super::super::print(&format!(
            "{}: {} renditions, {} segments, {} bytes in {:.2} s\n",
            out.join("master.m3u8").display(),
            renditions.len(),
            summary["segments"],
            summary["bytes"],
            started.elapsed().as_secs_f64()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn open_all(inputs: &[PathBuf], segment_seconds: f64) -> anyhow::Result<Vec<Rendition>> {
    inputs
        .iter()
        .map(|path| {
            let r = Rendition::open(path, segment_seconds)
                .with_context(|| path.display().to_string())?;
            for reason in &r.index().skipped {
                tracing::warn!("{}: {reason}", path.display());
            }
            Ok(r)
        })
        .collect()
}

fn write_playlists(renditions: &[Rendition], dir: &Path) -> anyhow::Result<()> {
    let variants: Vec<_> = renditions
        .iter()
        .map(Rendition::variant)
        .enumerate()
        .collect();
    write_file(
        &dir.join("master.m3u8"),
        hls::master_playlist(&variants, "").as_bytes(),
    )?;
    for (n, r) in renditions.iter().enumerate() {
        let name = hls::media_playlist_name(n, r.index().kind_suffix());
        write_file(&dir.join(name), r.media_playlist(n, "", None).as_bytes())?;
    }
    Ok(())
}

/// The CMAF manifests and init segments of `renditions` in `dir`.
fn write_cmaf_manifests(renditions: &[Rendition], dir: &Path) -> anyhow::Result<()> {
    let sources: Vec<_> = renditions
        .iter()
        .enumerate()
        .map(|(n, r)| r.cmaf_source(n))
        .collect();
    write_file(
        &dir.join(cmaf::MASTER),
        cmaf::master_playlist(&sources, "").as_bytes(),
    )?;
    let duration = renditions
        .iter()
        .map(Rendition::duration_seconds)
        .fold(0.0, f64::max);
    let longest = renditions
        .iter()
        .flat_map(|r| r.plan().segments.iter())
        .map(|s| s.duration_90k() as f64 / 90_000.0)
        .fold(0.0, f64::max);
    write_file(
        &dir.join(cmaf::MANIFEST),
        cmaf::mpd(&sources, duration, longest).as_bytes(),
    )?;
    for (n, r) in renditions.iter().enumerate() {
        for track in TrackKind::all(r.index()) {
            let playlist = r.cmaf_media_playlist(n, track, "", None)?;
            write_file(
                &dir.join(cmaf::media_playlist_name(n, track)),
                playlist.as_bytes(),
            )?;
            let init = r.init_segment(track, None)?;
            write_file(&dir.join(cmaf::init_name(n, track)), &init)?;
        }
        if let Some(playlist) = r.cmaf_iframe_playlist(n, "") {
            write_file(
                &dir.join(cmaf::iframe_playlist_name(n)),
                playlist.as_bytes(),
            )?;
        }
    }
    Ok(())
}

/// One segment file to make.
#[derive(Clone, Copy)]
enum Job {
    Ts {
        n: usize,
        k: usize,
    },
    Fragment {
        n: usize,
        k: usize,
        track: TrackKind,
    },
    Trick {
        n: usize,
        k: usize,
    },
}

/// Where TS and CMAF files go.
struct Dirs<'d> {
    ts: &'d Path,
    cmaf: &'d Path,
}

/// Makes every segment of `work` with `jobs` threads; returns the bytes
/// written per rendition. Stops at the first error.
fn write_segments(
    renditions: &[Rendition],
    work: &[Job],
    dirs: &Dirs,
    jobs: usize,
) -> anyhow::Result<Vec<u64>> {
    let bar = progress_bar(work.len() as u64);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let bytes: Vec<AtomicU64> = renditions.iter().map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(work.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&job) = work.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let n = match job {
                        Job::Ts { n, .. } | Job::Fragment { n, .. } | Job::Trick { n, .. } => n,
                    };
                    match write_segment(&renditions[n], job, dirs) {
                        Ok(len) => {
                            bytes[n].fetch_add(len, Ordering::Relaxed);
                            bar.inc(1);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error
                                .lock()
                                .expect("no panics while held")
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    match first_error.into_inner().expect("no panics while held") {
        Some(e) => Err(e),
        None => Ok(bytes.into_iter().map(AtomicU64::into_inner).collect()),
    }
}

/// Streams the segment of `job` into its file, a batch of samples at a time.
fn write_segment(r: &Rendition, job: Job, dirs: &Dirs) -> anyhow::Result<u64> {
    let (path, k) = match job {
        Job::Ts { n, k } => (
            dirs.ts
                .join(hls::segment_name(k + 1, n, r.index().kind_suffix())),
            k,
        ),
        Job::Fragment { n, k, track } => (dirs.cmaf.join(cmaf::segment_name(k + 1, n, track)), k),
        Job::Trick { n, k } => (dirs.cmaf.join(cmaf::trick_name(k + 1, n)), k),
    };
    let mut file =
        fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let written = match job {
        // The TS muxer writes in large blocks of its own.
        Job::Ts { k, .. } => r.write_segment(k, &mut file),
        Job::Fragment { track, .. } => {
            let mut out = std::io::BufWriter::with_capacity(256 << 10, &mut file);
            r.write_fragment(k, track, &mut out).and_then(|n| {
                out.flush()?;
                Ok(n)
            })
        }
        // One picture: written whole.
        Job::Trick { .. } => r.write_trick_fragment(k, &mut file),
    };
    let written = written.with_context(|| format!("{}: segment {}", r.path().display(), k + 1))?;
    Ok(written)
}

fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

fn summary(out: &Path, renditions: &[Rendition], bytes: &[u64], seconds: f64) -> serde_json::Value {
    let list: Vec<_> = renditions
        .iter()
        .zip(bytes)
        .enumerate()
        .map(|(n, (r, &bytes))| {
            let variant = r.variant();
            serde_json::json!({
                "rendition": n,
                "input": r.path(),
                "playlist": hls::media_playlist_name(n, r.index().kind_suffix()),
                "codecs": variant.codecs,
                "duration_seconds": r.duration_seconds(),
                "segments": r.segment_count(),
                "bytes": bytes,
                "bandwidth": variant.bandwidth,
            })
        })
        .collect();
    serde_json::json!({
        "out": out,
        "master": out.join("master.m3u8"),
        "renditions": list,
        "segments": renditions.iter().map(Rendition::segment_count).sum::<usize>(),
        "bytes": bytes.iter().sum::<u64>(),
        "seconds": seconds,
    })
}

/// A hidden directory next to the destination, removed unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(out: &Path) -> anyhow::Result<Staging> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let name = out.file_name().context("--out needs a directory name")?;
        let path = parent.join(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if path.exists() {
            fs::remove_dir_all(&path).ok();
        }
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the package to `out`, replacing what was there.
    fn commit(mut self, out: &Path) -> anyhow::Result<()> {
        let old = self.path.with_extension("old");
        let replaced = out.exists();
        if replaced {
            fs::rename(out, &old).with_context(|| format!("moving {} aside", out.display()))?;
        }
        fs::rename(&self.path, out).with_context(|| format!("renaming into {}", out.display()))?;
        self.committed = true;
        if replaced {
            fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
