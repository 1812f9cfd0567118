//! The cache lifecycle from the command line: gc (TTL, size cap, free
//! space, orphans), invalidate, stat, master and pre-warming, with the
//! clock injected (`--now`) instead of sleeping; and all of it while serve
//! runs. Expected counts come from what the playlists list, not from a
//! run's history.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use m3u8_rs::Playlist;

use crate::http_client::Server;
use crate::support::{casterpak, fixture, SmallDisk};

const T0: i64 = 1_900_000_000;
const DAY: i64 = 86_400;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    fs::create_dir_all(root.join("films")).unwrap();
    fs::copy(fixture("h264-aac-bframes.mp4"), root.join("films/a_hi.mp4")).unwrap();
    fs::copy(fixture("hevc-aac.mp4"), root.join("films/a_lo.mp4")).unwrap();
    fs::copy(fixture("aac-only.m4a"), root.join("films/radio.m4a")).unwrap();
    let cache = dir.path().join("cache");
    Setup {
        _dir: dir,
        root,
        cache,
    }
}

impl Setup {
    /// Runs a subcommand against this root and cache at time `now`.
    fn run(&self, now: i64, args: &[&str]) -> assert_cmd::assert::Assert {
        casterpak()
            .arg("--root")
            .arg(&self.root)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--now")
            .arg(now.to_string())
            .args(args)
            .assert()
    }

    fn json(&self, now: i64, args: &[&str]) -> serde_json::Value {
        let out = self.run(now, args).success().get_output().stdout.clone();
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out)))
    }

    fn warm(&self, now: i64, path: &str) -> serde_json::Value {
        self.json(now, &["package", "--json", path])
    }

    fn stat(&self) -> serde_json::Value {
        self.json(T0, &["stat", "--json"])
    }

    fn files(&self) -> Vec<PathBuf> {
        walk(&self.cache.join("objects"))
    }

    /// What a player finds under `path` (a file or csmil path), asked of a
    /// server with a cache of its own so that this one is not touched.
    fn listing(&self, path: &str) -> Listing {
        let scratch = tempfile::tempdir().unwrap();
        let server = Server::start(&self.root, scratch.path(), &[]);
        let get = |uri: &str| {
            let reply = server.get(&format!("/i/{path}/{uri}"));
            assert_eq!(reply.status, 200, "{path}/{uri}: {}", reply.text());
            m3u8_rs::parse_playlist_res(&reply.body).unwrap()
        };
        let Playlist::MasterPlaylist(master) = get("master.m3u8") else {
            panic!("{path}: no master playlist");
        };
        let mut segments = 0;
        // I-frame playlists are made in memory, of the same segments.
        let variants: Vec<_> = master.variants.iter().filter(|v| !v.is_i_frame).collect();
        for variant in &variants {
            let Playlist::MediaPlaylist(media) = get(&variant.uri) else {
                panic!("{path}/{}: not a media playlist", variant.uri);
            };
            segments += media.segments.len();
        }
        Listing {
            variants: variants.len(),
            segments,
        }
    }
}

/// The playlists and segments of a path, as its playlists list them. In
/// these tests each variant is made from a source of its own.
#[derive(Clone, Copy, Debug)]
struct Listing {
    variants: usize,
    segments: usize,
}

impl Listing {
    /// Objects a player's requests make: the master, a media playlist per
    /// variant, and every segment.
    fn requested(self) -> usize {
        1 + self.stored()
    }

    /// Those the cache keeps: all but the master, which is made again from
    /// the parsed sources each time, in memory.
    fn stored(self) -> usize {
        self.variants + self.segments
    }

    /// What pre-warming leaves in the cache: those, and one parsed index
    /// per source.
    fn cached(self) -> usize {
        self.stored() + self.variants
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn disk_bytes(files: &[PathBuf]) -> u64 {
    files.iter().map(|f| fs::metadata(f).unwrap().len()).sum()
}

/// The objects `gc --dry-run` lists at `now` with the environment `env`,
/// in its order: (file relative to the cache, reason).
fn dry_run_list(s: &Setup, now: i64, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let out = casterpak()
        .envs(env.iter().copied())
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--now", &now.to_string(), "gc", "--dry-run"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("would delete "))
        .filter_map(|rest| {
            // FILE (KIND, N bytes, REASON)
            let (file, details) = rest.split_once(" (")?;
            let reason = details.strip_suffix(')')?.rsplit(", ").next()?;
            Some((file.to_string(), reason.to_string()))
        })
        .collect()
}

#[test]
fn prewarm_fills_the_cache_that_serve_then_hits() {
    let s = setup();
    let listed = s.listing("films/a_,hi,lo,.mp4.csmil").requested();
    let first = s.warm(T0, "films/a_,hi,lo,.mp4.csmil");
    assert_eq!(
        (first["objects"].as_u64(), first["made"].as_u64()),
        (Some(listed as u64), Some(listed as u64))
    );
    let again = s.warm(T0, "films/a_,hi,lo,.mp4.csmil");
    assert_eq!(again["already_cached"], listed - 1, "all but the master");
    let server = Server::start(&s.root, &s.cache, &[]);
    for path in [
        "/i/films/a_,hi,lo,.mp4.csmil/index_0_av.m3u8",
        "/i/films/a_,hi,lo,.mp4.csmil/segment2_1_av.ts",
    ] {
        assert_eq!(server.get(path).header("X-Cache"), Some("HIT"), "{path}");
    }
    // The master is made from the cached indexes, and then kept in memory.
    let master = "/i/films/a_,hi,lo,.mp4.csmil/master.m3u8";
    assert_eq!(server.get(master).header("X-Cache"), Some("MISS"));
    assert_eq!(server.get(master).header("X-Cache"), Some("HIT"));
}

#[test]
fn master_prints_what_serve_answers() {
    let s = setup();
    let printed = s
        .run(T0, &["master", "films/a_,hi,lo,.mp4.csmil"])
        .success()
        .get_output()
        .stdout
        .clone();
    let server = Server::start(&s.root, &s.cache, &[]);
    let served = server.get("/i/films/a_,hi,lo,.mp4.csmil/master.m3u8");
    assert_eq!(printed, served.body);
    let same = s
        .run(T0, &["master", "/i/films/a_hi.mp4/master.m3u8"])
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(same, server.get("/i/films/a_hi.mp4/master.m3u8").body);
    s.run(T0, &["master", "films/missing.mp4"])
        .failure()
        .stderr(predicates::str::contains("no such file"));
}

#[test]
fn stat_totals_equal_what_is_on_disk() {
    let s = setup();
    let (films, radio) = (
        s.listing("films/a_,hi,lo,.mp4.csmil"),
        s.listing("films/radio.m4a"),
    );
    s.warm(T0, "films/a_,hi,lo,.mp4.csmil");
    s.warm(T0 + 100, "films/radio.m4a");
    let stat = s.stat();
    let files = s.files();
    assert_eq!(stat["objects"], files.len());
    assert_eq!(stat["objects"], films.cached() + radio.cached());
    assert_eq!(stat["bytes"], disk_bytes(&files));
    assert_eq!(
        stat["by_kind"]["segment"]["objects"],
        films.segments + radio.segments
    );
    assert_eq!(
        stat["by_kind"]["playlist"]["objects"],
        films.variants + radio.variants,
        "media playlists (masters are not stored)"
    );
    assert_eq!(
        stat["by_kind"]["index"]["objects"],
        films.variants + radio.variants,
        "one parsed index per source"
    );
    assert_eq!(stat["oldest_access"], T0);
    assert_eq!(stat["newest_access"], T0 + 100);
    // Each object was made once, on a miss.
    assert_eq!(stat["misses"], stat["objects"]);
    assert_eq!(stat["top_sources"][0]["path"], "films/a_hi.mp4");
    // The human table says the same totals.
    let text = s.run(T0, &["stat"]).success().get_output().stdout.clone();
    let text = String::from_utf8(text).unwrap();
    let total = format!(
        "{:<10} {:>9} {:>14}",
        "total",
        files.len(),
        disk_bytes(&files)
    );
    assert!(text.contains(&total), "{text}");
}

#[test]
fn gc_deletes_what_outlived_its_ttl_and_keeps_the_rest() {
    let s = setup();
    s.warm(T0, "films/a_hi.mp4");
    let old: Vec<PathBuf> = s.files();
    s.warm(T0 + 2 * DAY, "films/radio.m4a");
    let young: Vec<PathBuf> = s.files().into_iter().filter(|f| !old.contains(f)).collect();
    // Nothing is older than 3 days yet.
    let report = s.json(T0 + 3 * DAY, &["gc", "--json"]);
    assert_eq!(report["deleted_objects"], 0);
    // A dry run counts and lists without deleting.
    let dry = s.json(T0 + 3 * DAY + 10, &["gc", "--dry-run", "--json"]);
    assert_eq!(dry["deleted_objects"], old.len());
    assert_eq!(dry["deleted_bytes"], disk_bytes(&old));
    let listed = dry_run_list(&s, T0 + 3 * DAY + 10, &[]);
    let mut listed_files: Vec<PathBuf> = listed.iter().map(|(f, _)| s.cache.join(f)).collect();
    listed_files.sort();
    assert_eq!(listed_files, old);
    assert!(listed.iter().all(|(_, reason)| reason == "ttl"));
    assert!(old.iter().all(|f| f.exists()));
    let report = s.json(T0 + 3 * DAY + 10, &["gc", "--json"]);
    assert_eq!(report["deleted_objects"], old.len());
    assert_eq!(report["by_reason"]["ttl"]["objects"], old.len());
    assert_eq!(report["by_reason"]["ttl"]["bytes"], dry["deleted_bytes"]);
    assert!(
        report.get("deleted").is_none(),
        "the report counts, it does not list"
    );
    assert!(old.iter().all(|f| !f.exists()), "old objects gone");
    assert!(young.iter().all(|f| f.exists()), "young objects stay");
    assert_eq!(s.stat()["objects"], young.len());
    // The TTL is configurable.
    let report = casterpak()
        .env("CASTERPAK_CACHE_OUTPUT_TTL", "1d")
        .args(["--cache-dir"])
        .arg(&s.cache)
        .args(["--now", &(T0 + 3 * DAY + 10).to_string(), "gc", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&report.get_output().stdout).unwrap();
    assert_eq!(report["deleted_objects"], young.len());
    // serve makes again what gc removed.
    let server = Server::start(&s.root, &s.cache, &[]);
    let seg = server.get("/i/films/a_hi.mp4/segment1_0_av.ts");
    assert_eq!((seg.status, seg.header("X-Cache")), (200, Some("MISS")));
}

#[test]
fn gc_enforces_the_size_cap_least_recently_used_first() {
    let s = setup();
    s.warm(T0, "films/a_hi.mp4");
    let first: Vec<PathBuf> = s.files();
    s.warm(T0 + 60, "films/radio.m4a");
    let second: Vec<PathBuf> = s
        .files()
        .into_iter()
        .filter(|f| !first.contains(f))
        .collect();
    // Use the first again: the radio objects (and the first's parsed index,
    // which hits do not need) become the least recently used.
    s.warm(T0 + 120, "films/a_hi.mp4");
    let (first_index, first): (Vec<PathBuf>, Vec<PathBuf>) = first
        .into_iter()
        .partition(|f| f.extension().is_some_and(|e| e == "idx"));
    // Deleting down to 90 % of the cap keeps exactly the recently used.
    let cap = disk_bytes(&first).div_ceil(90) * 100;
    assert!(disk_bytes(&first) + disk_bytes(&second) > cap);
    let out = casterpak()
        .env("CASTERPAK_CACHE_OUTPUT_MAX_SIZE", cap.to_string())
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--now", &(T0 + 180).to_string(), "gc", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        report["by_reason"]["size"]["objects"],
        second.len() + first_index.len()
    );
    assert_eq!(
        report["deleted_objects"],
        report["by_reason"]["size"]["objects"]
    );
    assert!(
        second.iter().chain(&first_index).all(|f| !f.exists()),
        "least recently used went"
    );
    assert!(first.iter().all(|f| f.exists()), "recently used stayed");
    assert!(report["kept_bytes"].as_u64().unwrap() <= cap / 100 * 90);
}

#[test]
fn gc_removes_orphans_both_ways() {
    let s = setup();
    s.warm(T0, "films/a_hi.mp4");
    let files = s.files();
    // A row without its file...
    fs::remove_file(&files[0]).unwrap();
    // ...and an old file without a row (a young one may be another
    // process's object between rename and insert: it stays).
    let orphan = s.cache.join("objects/zz/orphan.ts");
    let young_orphan = s.cache.join("objects/zz/young.ts");
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"x").unwrap();
    fs::write(&young_orphan, b"x").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // A dry run counts them and leaves them.
    let dry = s.json(T0, &["gc", "--dry-run", "--json"]);
    assert_eq!(dry["orphans"], 2);
    assert!(orphan.exists());
    assert_eq!(s.stat()["objects"], files.len());
    let text = s
        .run(T0, &["gc", "--dry-run"])
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8_lossy(&text).contains("2 orphans found"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    let report = s.json(T0, &["gc", "--json"]);
    assert_eq!(report["orphans"], 2);
    assert!(!orphan.exists() && young_orphan.exists());
    assert_eq!(s.stat()["objects"], files.len() - 1);
    assert_eq!(s.json(T0, &["gc", "--dry-run", "--json"])["orphans"], 0);
}

#[test]
fn invalidate_by_glob_age_all_and_hard() {
    let s = setup();
    let (hi, lo, radio) = (
        s.listing("films/a_hi.mp4"),
        s.listing("films/a_lo.mp4"),
        s.listing("films/radio.m4a"),
    );
    s.warm(T0, "films/a_,hi,lo,.mp4.csmil");
    s.warm(T0 + DAY, "films/radio.m4a");
    let count = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap() as usize;
    // By glob: every object made from a_hi.mp4: its playlist, segments and
    // index.
    let r = s.json(T0 + DAY, &["invalidate", "--json", "films/*_hi.mp4"]);
    let of_hi = hi.variants + hi.segments + 1;
    assert_eq!(count(&r, "expired"), of_hi);
    assert_eq!(s.stat()["by_kind"]["segment"]["expired"], hi.segments);
    // Again: nothing more to expire.
    let r = s.json(T0 + DAY, &["invalidate", "--json", "films/*_hi.mp4"]);
    assert_eq!(count(&r, "expired"), 0);
    // gc removes them...
    let gc = s.json(T0 + DAY, &["gc", "--json"]);
    assert_eq!(count(&gc, "deleted_objects"), of_hi);
    assert_eq!(gc["by_reason"]["invalidated"]["objects"], of_hi);
    // ...and the next request makes them again (but the index, which a
    // request makes without counting it).
    let warm = s.warm(T0 + DAY, "films/a_,hi,lo,.mp4.csmil");
    assert_eq!(
        (count(&warm, "made"), count(&warm, "already_cached")),
        (1 + hi.variants + hi.segments, lo.variants + lo.segments)
    );
    // By age: only what was made more than 12 h before.
    let r = s.json(
        T0 + DAY + 3600,
        &["invalidate", "--json", "--older-than", "12h"],
    );
    assert_eq!(
        count(&r, "expired"),
        lo.variants + lo.segments + 1,
        "the lo rendition's playlist, segments and index, made at T0"
    );
    // Hard: files go now.
    let before = s.files().len();
    let r = s.json(
        T0 + DAY,
        &["invalidate", "--json", "--hard", "films/radio.m4a"],
    );
    assert_eq!(count(&r, "deleted"), radio.cached());
    assert_eq!(s.files().len(), before - radio.cached());
    // All.
    let r = s.json(T0 + DAY, &["invalidate", "--json", "--all", "--hard"]);
    assert_eq!(count(&r, "deleted"), before - radio.cached());
    assert!(s.files().is_empty());
    assert_eq!(s.stat()["objects"], 0);
    s.run(T0, &["invalidate"])
        .failure()
        .stderr(predicates::str::contains("say what to invalidate"));
}

#[test]
fn gc_and_invalidate_in_a_loop_while_serve_answers() {
    let s = setup();
    let server = Server::start(&s.root, &s.cache, &["--workers", "8"]);
    let paths = [
        "/i/films/a_,hi,lo,.mp4.csmil/master.m3u8",
        "/i/films/a_hi.mp4/index_0_av.m3u8",
        "/i/films/a_hi.mp4/segment1_0_av.ts",
        "/i/films/a_hi.mp4/segment2_0_av.ts",
        "/i/films/a_lo.mp4/segment1_0_av.ts",
        "/i/films/radio.m4a/segment1_0_a.ts",
    ];
    let expected: Vec<Vec<u8>> = paths.iter().map(|p| server.get(p).body).collect();
    let deadline = Instant::now() + Duration::from_secs(6);
    let far_future = (T0 * 2).to_string();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (server, expected) = (&server, &expected);
            scope.spawn(move || {
                let mut n = t;
                while Instant::now() < deadline {
                    let reply = server.get(paths[n % paths.len()]);
                    assert_eq!(
                        reply.status,
                        200,
                        "{}: {}",
                        paths[n % paths.len()],
                        reply.text()
                    );
                    assert_eq!(
                        reply.body,
                        expected[n % paths.len()],
                        "{}: whole and identical",
                        paths[n % paths.len()]
                    );
                    n += 1;
                }
            });
        }
        let mut round = 0;
        while Instant::now() < deadline {
            let args: &[&str] = match round % 3 {
                0 => &["--now", &far_future, "gc"],
                1 => &["invalidate", "--all"],
                _ => &["invalidate", "--all", "--hard"],
            };
            let out = casterpak()
                .arg("--cache-dir")
                .arg(&s.cache)
                .args(args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{args:?}: {stderr}");
            assert!(!stderr.contains("locked"), "{stderr}");
            round += 1;
        }
        assert!(round >= 3, "gc and invalidate ran {round} times");
    });
}

#[test]
fn serve_runs_gc_on_an_interval_when_configured() {
    let s = setup();
    let env = [
        ("CASTERPAK_CACHE_GC_INTERVAL", "1"),
        ("CASTERPAK_CACHE_OUTPUT_TTL", "0"),
    ];
    let server = Server::start_with_env(&s.root, &s.cache, &[], &env);
    assert_eq!(server.get("/i/films/a_hi.mp4/segment1_0_av.ts").status, 200);
    // Stored after its answer: asked again, it is waited for, and a hit.
    let again = server.get("/i/films/a_hi.mp4/segment1_0_av.ts");
    assert_eq!(again.header("X-Cache"), Some("HIT"));
    assert!(!s.files().is_empty());
    // With a TTL of 0, the next gc round (every second) removes it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.files().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s.files().is_empty(), "gc ran inside serve");
    assert_eq!(
        server
            .get("/i/films/a_hi.mp4/segment1_0_av.ts")
            .header("X-Cache"),
        Some("MISS")
    );
}

/// Indexes wait a second before they are stored (past a player's first
/// requests); more files than the writer's queue holds, read within that
/// second, still all have theirs stored.
#[test]
fn prewarming_many_files_at_once_stores_every_index() {
    let s = setup();
    let names: Vec<String> = (0..40).map(|n| format!("films/copy{n}.mp4")).collect();
    for name in &names {
        fs::copy(fixture("aac-only.m4a"), s.root.join(name)).unwrap();
    }
    let mut args = vec!["package", "--json"];
    args.extend(names.iter().map(String::as_str));
    s.json(T0, &args);
    let indexes = s
        .files()
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "idx"))
        .count();
    assert_eq!(indexes, names.len(), "one stored index per file");
}

#[test]
fn prewarm_with_fsync_makes_the_same_objects() {
    let s = setup();
    let out = casterpak()
        .env("CASTERPAK_CACHE_FSYNC", "true")
        .arg("--root")
        .arg(&s.root)
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["package", "--json", "films/a_hi.mp4"])
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let listed = s.listing("films/a_hi.mp4").requested();
    assert_eq!(summary["made"], listed);
    assert_eq!(
        s.warm(T0, "films/a_hi.mp4")["already_cached"],
        listed - 1,
        "all but the master"
    );
}

#[test]
fn commands_on_a_mistyped_cache_dir_fail_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let missing = dir.path().join("typo/cache");
    let commands: [&[&str]; 5] = [
        &["stat"],
        &["gc"],
        &["gc", "--dry-run", "--json"],
        &["invalidate", "--all"],
        &["invalidate", "--hard", "films/*"],
    ];
    for cache_dir in [Path::new("/nonexistent/typo"), &missing, &empty] {
        for args in commands {
            let out = casterpak()
                .arg("--cache-dir")
                .arg(cache_dir)
                .args(args)
                .assert()
                .failure()
                .get_output()
                .stderr
                .clone();
            let stderr = String::from_utf8_lossy(&out);
            assert!(
                stderr.contains(&format!("no cache in {}", cache_dir.display()))
                    && stderr.contains("--cache-dir"),
                "{args:?}: {stderr}"
            );
        }
    }
    assert!(!Path::new("/nonexistent").exists());
    assert!(!dir.path().join("typo").exists());
    assert_eq!(
        fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing made in it"
    );
}

/// The access groups of the free-space tests: each warmed a minute after
/// the one before, so least recently used first is this order.
const GROUPS: [&str; 3] = ["films/a_hi.mp4", "films/radio.m4a", "films/a_lo.mp4"];

/// Warms the groups in order; returns the files each one added.
fn warm_groups(s: &Setup) -> Vec<Vec<PathBuf>> {
    let mut groups = Vec::new();
    for (n, path) in GROUPS.iter().enumerate() {
        let before = s.files();
        s.warm(T0 + 60 * n as i64, path);
        groups.push(
            s.files()
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect(),
        );
    }
    groups
}

/// `df`'s figure (1-byte blocks) for the filesystem holding `path`.
fn df(field: &str, path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", &format!("--output={field}")])
        .arg(path)
        .output()
        .expect("df runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df --output={field} {}: {text}", path.display()))
}

#[test]
fn gc_below_min_free_deletes_least_recently_used_first() {
    let s = setup();
    let groups = warm_groups(&s);
    // A floor above the whole filesystem: gc deletes everything to reach
    // it, least recently used first, whatever the TTLs and caps say.
    let floor = (2 * df("size", &s.cache)).to_string();
    let env = [("CASTERPAK_CACHE_MIN_FREE", floor.as_str())];
    let listed = dry_run_list(&s, T0 + 180, &env);
    let group_of = |file: &str| {
        let path = s.cache.join(file);
        groups
            .iter()
            .position(|g| g.contains(&path))
            .unwrap_or_else(|| panic!("{file} is in no group"))
    };
    let order: Vec<usize> = listed.iter().map(|(f, _)| group_of(f)).collect();
    assert_eq!(order.len(), s.files().len(), "every object listed");
    assert!(order.is_sorted(), "least recently used first: {order:?}");
    assert!(listed.iter().all(|(_, reason)| reason == "free_space"));
    let out = casterpak()
        .envs(env)
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--now", &(T0 + 180).to_string(), "gc", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["by_reason"]["free_space"]["objects"], order.len());
    assert_eq!(report["min_free_bytes"], floor.parse::<u64>().unwrap());
    assert!(s.files().is_empty());
    assert_eq!(s.stat()["objects"], 0);
}

/// A tmpfs mounted for one test, unmounted when dropped.
#[test]
#[cfg_attr(casterpak_not_root, ignore = "needs root (mounts a small tmpfs)")]
fn gc_frees_space_up_to_min_free_on_a_small_filesystem() {
    let mut s = setup();
    let tmpfs = SmallDisk::mount(&s._dir.path().join("small"), "4m");
    s.cache = tmpfs.dir.join("cache");
    let groups = warm_groups(&s);
    let oldest: u64 = groups[0]
        .iter()
        .map(|f| fs::metadata(f).unwrap().len().div_ceil(4096) * 4096)
        .sum();
    // Fill the filesystem so that gc must free about a quarter of what the
    // least recently used group holds (and a little more: its own
    // database files take some) to get back above the floor plus its 10 %
    // margin.
    let floor: u64 = 256 << 10;
    let free_wanted = floor + floor / 10 - oldest / 4;
    assert!(free_wanted < floor);
    let ballast = df("avail", &tmpfs.dir) - free_wanted;
    fs::write(tmpfs.dir.join("ballast"), vec![1u8; ballast as usize]).unwrap();
    assert!(df("avail", &tmpfs.dir) < floor);
    let env = [("CASTERPAK_CACHE_MIN_FREE", floor.to_string())];
    let gc = |dry: bool| {
        let out = casterpak()
            .envs(env.iter().map(|(k, v)| (k, v.as_str())))
            .arg("--cache-dir")
            .arg(&s.cache)
            .args(["--now", &(T0 + 180).to_string(), "gc", "--json"])
            .args(dry.then_some("--dry-run"))
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout).unwrap()
    };
    let dry = gc(true);
    assert!(
        groups.iter().flatten().all(|f| f.exists()),
        "a dry run deletes nothing"
    );
    let report = gc(false);
    let freed = &report["by_reason"]["free_space"];
    assert_eq!(freed, &dry["by_reason"]["free_space"]);
    assert!(freed["objects"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["deleted_objects"], freed["objects"]);
    let gone: Vec<&PathBuf> = groups.iter().flatten().filter(|f| !f.exists()).collect();
    assert_eq!(gone.len() as u64, freed["objects"].as_u64().unwrap());
    assert!(
        gone.iter().all(|f| groups[0].contains(f)),
        "only the least recently used group: {gone:?}"
    );
    assert!(df("avail", &tmpfs.dir) >= floor, "back above the floor");
    // Above the floor, the next gc leaves everything.
    assert_eq!(gc(false)["deleted_objects"], 0);
    drop(tmpfs);
}
