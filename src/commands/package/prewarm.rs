//! `casterpak package PATH...` without `--out`: fills the serve cache with
//! every playlist and segment of each path, exactly as requests to `serve`
//! would, so that the first viewer gets cache hits.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;

use super::{progress_bar, Args};
use crate::cache::{Clock, Object, State};
use crate::config::Config;
use crate::origin::{master_path, Origin};

pub fn run(args: Args, config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let cache = crate::commands::open_cache(&config, clock)?;
    let masters: Vec<String> = args
        .inputs
        .iter()
        .map(|p| master_path(&config, p))
        .collect();
    let origin = Origin::new(config, cache);
    let counts = Counts::default();
    // Playlists first (in order), then every segment they list.
    let mut segments = Vec::new();
    for master in &masters {
        for playlist in children(&origin, master, &counts)? {
            segments.extend(children(&origin, &playlist, &counts)?);
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
    origin.cache().flush_use()?;
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

/// Fetches playlist `path` and returns the URL paths of what it lists.
fn children(origin: &Origin, path: &str, counts: &Counts) -> anyhow::Result<Vec<String>> {
    let body = fetch(origin, path, counts)?
        .into_bytes()
        .with_context(|| format!("{path}: reading the cache"))?;
    let text = String::from_utf8(body).context("playlist is not UTF-8")?;
    let dir = &path[..path.rfind('/').expect("a URL path")];
    Ok(text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        // With base_url the URIs are absolute; their last part is the name.
        .map(|uri| format!("{dir}/{}", uri.rsplit('/').next().unwrap_or(uri)))
        .collect())
}
