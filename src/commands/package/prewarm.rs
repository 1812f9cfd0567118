//! `casterpak package PATH...` without `--out`: fills the serve cache with
//! every playlist and segment of each path, exactly as requests to `serve`
//! would, so that the first viewer gets cache hits.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;

use super::{progress_bar, Args};
use crate::cache::{Clock, Object, State};
use crate::config::Config;
use crate::origin::{master_path, Origin};
use crate::packager::fmp4::TrackKind;
use crate::packager::index::MAX_MORE_AUDIO;

/// How long pre-warming waits for copies into the input cache to end.
const COPY_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

pub fn run(args: Args, config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut masters: Vec<String> = Vec::new();
    for input in &args.inputs {
        let ts = master_path(&config, &under_root(&config, input)?);
        // The same path under the other prefix, for the other format.
        let rel = ts
            .strip_prefix(config.server.prefix.as_str())
            .or_else(|| ts.strip_prefix(config.server.cmaf_prefix.as_str()))
            .unwrap_or(&ts);
        if args.format.ts() {
            masters.push(format!("{}{rel}", config.server.prefix));
        }
        if args.format.cmaf() {
            let cmaf = format!("{}{rel}", config.server.cmaf_prefix);
            masters.push(cmaf.replace("/master.m3u8", "/manifest.mpd"));
            masters.push(cmaf);
        }
    }
    let cache = crate::commands::open_cache(&config, clock)?;
    // Say what is filled: without --out nothing is written but the cache,
    // which only a serve with this root and cache will use.
    eprintln!(
        "pre-warming the cache in {} for serve with the media root {} (give --out DIR for a \
         static package instead)",
        config.cache.dir.display(),
        config.media.root.display()
    );
    let origin = Origin::new(config, cache)?;
    let counts = Counts::default();
    // Playlists first (in order), then every segment they list.
    let mut segments = Vec::new();
    for master in &masters {
        let mut playlists = children(&origin, master, &counts)?;
        // A CMAF master lists one audio track per language; the MPD lists
        // them all: every track of every source is warmed.
        let cmaf_tracks = every_cmaf_track(&origin.config(), master);
        let listed = playlists.len();
        for playlist in cmaf_tracks {
            if !playlists.contains(&playlist) {
                playlists.push(playlist);
            }
        }
        for (i, playlist) in playlists.iter().enumerate() {
            match children(&origin, playlist, &counts) {
                Ok(more) => segments.extend(more),
                // A source without that track.
                Err(_) if i >= listed && origin.answer(playlist).is_err() => {}
                Err(e) => return Err(e),
            }
        }
    }
    let bar = progress_bar(segments.len() as u64);
    let next = AtomicUsize::new(0);
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs().min(segments.len().max(1)) {
            scope.spawn(|| {
                while let Some(path) = segments.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = fetch(&origin, path, &counts) {
                        failure.lock().expect("lock").get_or_insert(e);
                        break;
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    // Copies of remote sources into the input cache are part of warming.
    origin.inputs().wait_for_copies(COPY_WAIT);
    origin.finish(crate::commands::INDEX_WRITE_WAIT)?;
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    let summary = serde_json::json!({
        "cache": origin.config().cache.dir,
        "masters": masters,
        "objects": counts.objects.load(Ordering::Relaxed),
        "segments": segments.len(),
        "made": counts.made.load(Ordering::Relaxed),
        "already_cached": counts.hits.load(Ordering::Relaxed),
        "bytes": counts.bytes.load(Ordering::Relaxed),
        "seconds": started.elapsed().as_secs_f64(),
    });
    if args.json {
        super::super::print(&format!("{summary:#}\n"))?;
    } else {
        super::super::print(&format!(
            "cache {}: {} objects ({} made, {} already cached), {} bytes in {:.2} s\n",
            origin.config().cache.dir.display(),
            summary["objects"],
            summary["made"],
            summary["already_cached"],
            summary["bytes"],
            started.elapsed().as_secs_f64()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `input` as a path under the media root, as in serve's URLs. A
/// filesystem path (absolute, or `./`) must lead under the root.
fn under_root(config: &Config, input: &str) -> anyhow::Result<String> {
    let is_url = input.starts_with(config.server.prefix.as_str());
    let path = Path::new(input);
    if is_url || !(path.is_absolute() || input.starts_with("./") || input.starts_with("../")) {
        return Ok(input.to_string());
    }
    let root = config
        .media
        .root
        .canonicalize()
        .with_context(|| format!("media root {}", config.media.root.display()))?;
    let outside = || {
        anyhow::anyhow!(
            "{input}: not under the media root {}; pre-warming fills the cache for paths \
             under the root (set it with --root), and --out DIR writes a static package",
            root.display()
        )
    };
    // The file may be a csmil name that exists only as a URL: resolve its
    // folder.
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(outside());
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{input}: its folder"))?;
    let rel = dir.strip_prefix(&root).map_err(|_| outside())?.join(name);
    rel.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{input}: not UTF-8"))
}

#[derive(Default)]
struct Counts {
    objects: AtomicU64,
    made: AtomicU64,
    hits: AtomicU64,
    bytes: AtomicU64,
}

/// Answers `path` as serve would, counting what it made or found.
fn fetch(origin: &Origin, path: &str, counts: &Counts) -> anyhow::Result<Object> {
    let answer = origin
        .answer(path)
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    counts.objects.fetch_add(1, Ordering::Relaxed);
    counts.bytes.fetch_add(answer.object.len, Ordering::Relaxed);
    match answer.object.state {
        State::Hit => counts.hits.fetch_add(1, Ordering::Relaxed),
        State::Miss | State::Shared => counts.made.fetch_add(1, Ordering::Relaxed),
    };
    Ok(answer.object)
}

/// The media playlists of every track that a CMAF `master` path could
/// have: video and audio of each of its sources.
fn every_cmaf_track(config: &Config, master: &str) -> Vec<String> {
    let Some(rest) = master
        .strip_prefix(config.server.cmaf_prefix.as_str())
        .filter(|r| r.ends_with("/master.m3u8"))
    else {
        return Vec::new();
    };
    let Ok(request) = crate::packager::url::parse_cmaf(rest) else {
        return Vec::new();
    };
    let dir = &master[..master.rfind('/').expect("a URL path")];
    let tracks: Vec<String> = std::iter::once(TrackKind::Video)
        .chain((0..=MAX_MORE_AUDIO as u8).map(TrackKind::Audio))
        .map(TrackKind::suffix)
        .collect();
    (0..request.sources.len())
        .flat_map(|n| {
            tracks
                .iter()
                .map(move |t| format!("{dir}/index_{n}_{t}.m3u8"))
        })
        .collect()
}

/// Fetches playlist `path` and returns the URL paths of what it lists.
fn children(origin: &Origin, path: &str, counts: &Counts) -> anyhow::Result<Vec<String>> {
    let body = fetch(origin, path, counts)?
        .into_bytes()
        .with_context(|| format!("{path}: reading the cache"))?;
    let text = String::from_utf8(body).context("playlist is not UTF-8")?;
    if path.ends_with(".mpd") {
        // Its init and media segments are the HLS playlists' too.
        return Ok(Vec::new());
    }
    let dir = &path[..path.rfind('/').expect("a URL path")];
    // URI lines, and the URI attributes of tags (EXT-X-MEDIA, EXT-X-MAP);
    // not I-frame playlists: made in memory from the index when asked for,
    // they name segments the media playlists name.
    let uris = text.lines().filter_map(|l| {
        if l.is_empty() || l.starts_with("#EXT-X-I-FRAME-STREAM-INF") {
            None
        } else if l.starts_with('#') {
            let at = l.find("URI=\"")? + 5;
            l[at..].split('"').next()
        } else {
            Some(l)
        }
    });
    let mut children: Vec<String> = Vec::new();
    for uri in uris {
        // With base_url the URIs are absolute; their last part is the name.
        let child = format!("{dir}/{}", uri.rsplit('/').next().unwrap_or(uri));
        if !children.contains(&child) {
            children.push(child);
        }
    }
    Ok(children)
}
