//! `casterpak package INPUT... --out DIR`: a complete static package that
//! any web server can serve: MPEG-TS HLS (master, media playlists,
//! segments), CMAF (fMP4 HLS and a DASH MPD over the same segments), or
//! both (CMAF in `DIR/cmaf`).
//!
//! The package is built in a hidden sibling directory and renamed into
//! place at the end, so a failure or a kill never leaves a partial package
//! under the requested name.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cache::MAX_SIDECARS;
use crate::packager::captions::Captions;
use crate::packager::fmp4::TrackKind;
use crate::packager::rendition::Rendition;
use crate::packager::subtitles::{self, Cues, SubtitleTrack, Text};
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
    let subtitles = subtitle_renditions(&renditions[0]);
    let staging = Staging::create(out)?;
    let cmaf_dir = match args.format {
        Format::Cmaf => staging.path().to_owned(),
        _ => staging.path().join("cmaf"),
    };
    if args.format.ts() {
        write_playlists(&renditions, &subtitles, staging.path())?;
        write_subtitles(&renditions[0], &subtitles, staging.path(), false)?;
    }
    if args.format.cmaf() {
        fs::create_dir_all(&cmaf_dir)
            .with_context(|| format!("creating {}", cmaf_dir.display()))?;
        write_cmaf_manifests(&renditions, &subtitles, &cmaf_dir)?;
        write_subtitles(&renditions[0], &subtitles, &cmaf_dir, true)?;
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

/// The TS master (with each video's I-frame playlist, its closed
/// captions and the subtitle renditions), the media playlists and the
/// I-frame playlists of `renditions` in `dir`.
fn write_playlists(
    renditions: &[Rendition],
    subtitles: &[Subtitles],
    dir: &Path,
) -> anyhow::Result<()> {
    let variants: Vec<_> = renditions
        .iter()
        .map(Rendition::variant_with_iframes)
        .enumerate()
        .collect();
    let captions: Vec<_> = renditions.iter().map(Rendition::captions).collect();
    let master = hls::master_playlist(&variants, "");
    let master = hls::with_closed_captions(&master, &captions);
    let entries: Vec<_> = subtitles.iter().map(|(entry, _)| entry.clone()).collect();
    let master = hls::with_subtitles(&master, &entries, "");
    write_file(&dir.join("master.m3u8"), master.as_bytes())?;
    for (n, r) in renditions.iter().enumerate() {
        let kind = r.index().kind_suffix();
        let name = hls::media_playlist_name(n, kind);
        write_file(&dir.join(name), r.media_playlist(n, "", None).as_bytes())?;
        if let Some(playlist) = r.iframe_playlist(n, "") {
            let name = hls::iframe_playlist_name(n, kind);
            write_file(&dir.join(name), playlist.as_bytes())?;
        }
    }
    Ok(())
}

/// A subtitle rendition of a package, and its cues.
type Subtitles = (hls::Subtitles, Cues);

/// The subtitle renditions of a package: the sidecars beside its first
/// input (`<name>[.<lang>][.forced].vtt` or `.srt`) and the subtitle
/// tracks in that file, one per language (a sidecar before the file's
/// track), as the origin lists them. One that cannot be read is left out
/// with a warning.
fn subtitle_renditions(first: &Rendition) -> Vec<Subtitles> {
    let path = first.path();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    // As the origin lists them: in name order, at most MAX_SIDECARS.
    let mut names = stem
        .as_ref()
        .and_then(|stem| {
            let entries = fs::read_dir(dir).ok()?;
            let prefix = format!("{stem}.");
            let names = entries.flatten();
            let names = names.filter_map(|e| e.file_name().into_string().ok());
            Some(names.filter(|n| n.starts_with(&prefix)).collect::<Vec<_>>())
        })
        .unwrap_or_default();
    names.sort_unstable();
    names.truncate(MAX_SIDECARS);
    // Only regular files, as the origin takes (not a directory, a FIFO or
    // a device a link leads to).
    let sidecars = subtitles::sidecar_tracks(stem.as_deref().unwrap_or(""), names, |name| {
        let path = dir.join(name);
        fs::metadata(&path)
            .is_ok_and(|m| m.is_file())
            .then_some(path)
    });
    let name = path.display().to_string();
    let tracks =
        subtitles::with_file_tracks(sidecars, first.text_tracks(), &path.to_owned(), &name);
    tracks
        .into_iter()
        .filter_map(|t| match cues_of(&t, first) {
            Ok(cues) => Some((t.entry(), cues)),
            Err(e) => {
                tracing::warn!("{e:#}: left out of the package");
                None
            }
        })
        .collect()
}

/// The cues of a subtitle rendition of a package; of a sidecar, SRT
/// converted and bad cues skipped, with a warning.
fn cues_of(track: &SubtitleTrack<PathBuf>, first: &Rendition) -> anyhow::Result<Cues> {
    let path = &track.source;
    let format = match track.text {
        Text::Sidecar(format) => format,
        Text::InFile(id) => {
            let found = first.text_tracks().iter().find(|t| t.track_id == id);
            return Ok(found.expect("a track of the file").cues.clone());
        }
    };
    let reading = || format!("reading {}", path.display());
    // Never more than a subtitle file can be, whatever its length says.
    let mut bytes = Vec::new();
    fs::File::open(path)
        .with_context(reading)?
        .take(subtitles::MAX_SIDECAR_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(reading)?;
    if bytes.len() as u64 > subtitles::MAX_SIDECAR_BYTES {
        bail!(
            "{}: more than a subtitle file has ({} bytes at most)",
            path.display(),
            subtitles::MAX_SIDECAR_BYTES
        );
    }
    let cues = format
        .parse(&bytes)
        .with_context(|| path.display().to_string())?;
    if cues.skipped > 0 {
        tracing::warn!(
            "{}: {} cues that cannot be read left out",
            path.display(),
            cues.skipped
        );
    }
    Ok(cues)
}

/// The playlists and WebVTT segments of `subtitles`, timed by `timing`
/// (the first rendition), in `dir`; with `dash`, each also as one file
/// for the MPD.
fn write_subtitles(
    timing: &Rendition,
    subtitles: &[Subtitles],
    dir: &Path,
    dash: bool,
) -> anyhow::Result<()> {
    let plan = timing.plan();
    for (entry, cues) in subtitles {
        let tag = &entry.tag;
        let playlist = hls::subtitle_playlist(&plan.segments, tag, "");
        write_file(
            &dir.join(hls::subtitle_playlist_name(tag)),
            playlist.as_bytes(),
        )?;
        for k in 0..plan.segments.len() {
            let segment = subtitles::hls_segment(cues, plan, k).expect("k < segments");
            let name = hls::subtitle_segment_name(k + 1, tag);
            write_file(&dir.join(name), segment.as_bytes())?;
        }
        if dash {
            let name = cmaf::subtitle_file_name(tag);
            write_file(&dir.join(name), subtitles::dash_file(cues, plan).as_bytes())?;
        }
    }
    Ok(())
}

/// The CMAF manifests and init segments of `renditions` in `dir`.
fn write_cmaf_manifests(
    renditions: &[Rendition],
    subtitles: &[Subtitles],
    dir: &Path,
) -> anyhow::Result<()> {
    let sources: Vec<_> = renditions
        .iter()
        .enumerate()
        .map(|(n, r)| r.cmaf_source(n))
        .collect();
    // Of each source with video, in the order masters list them.
    let captions: Vec<_> = renditions
        .iter()
        .filter(|r| r.index().video.is_some())
        .map(Rendition::captions)
        .collect();
    let entries: Vec<_> = subtitles.iter().map(|(entry, _)| entry.clone()).collect();
    let master = cmaf::master_playlist(&sources, "");
    let master = hls::with_closed_captions(&master, &captions);
    let master = hls::with_subtitles(&master, &entries, "");
    write_file(&dir.join(cmaf::MASTER), master.as_bytes())?;
    let duration = renditions
        .iter()
        .map(Rendition::duration_seconds)
        .fold(0.0, f64::max);
    let longest = renditions
        .iter()
        .flat_map(|r| r.plan().segments.iter())
        .map(|s| s.duration_90k() as f64 / 90_000.0)
        .fold(0.0, f64::max);
    let mpd = cmaf::mpd(&sources, duration, longest);
    let all = captions.iter().fold(Captions::default(), Captions::merged);
    let mpd = cmaf::with_closed_captions(&mpd, all);
    let mpd = cmaf::with_text_tracks(&mpd, &entries, duration);
    write_file(&dir.join(cmaf::MANIFEST), mpd.as_bytes())?;
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
