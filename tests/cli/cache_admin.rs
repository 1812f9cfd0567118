//! The cache lifecycle from the command line: gc (TTL, size cap, orphans),
//! invalidate, stat, master and pre-warming, with the clock injected
//! (`--now`) instead of sleeping; and all of it while serve runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::http_client::Server;
use crate::support::{casterpak, fixture};

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

#[test]
fn prewarm_fills_the_cache_that_serve_then_hits() {
    let s = setup();
    let first = s.warm(T0, "films/a_,hi,lo,.mp4.csmil");
    // master, 2 media playlists, 2 + 2 segments.
    assert_eq!(
        (first["objects"].as_u64(), first["made"].as_u64()),
        (Some(7), Some(7))
    );
    let again = s.warm(T0, "films/a_,hi,lo,.mp4.csmil");
    assert_eq!(again["already_cached"], 7);
    let server = Server::start(&s.root, &s.cache, &[]);
    for path in [
        "/i/films/a_,hi,lo,.mp4.csmil/master.m3u8",
        "/i/films/a_,hi,lo,.mp4.csmil/segment2_1_av.ts",
    ] {
        assert_eq!(server.get(path).header("X-Cache"), Some("HIT"), "{path}");
    }
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
    s.warm(T0, "films/a_,hi,lo,.mp4.csmil");
    s.warm(T0 + 100, "films/radio.m4a");
    let stat = s.stat();
    let files = s.files();
    assert_eq!(stat["objects"], files.len());
    assert_eq!(stat["bytes"], disk_bytes(&files));
    assert_eq!(stat["by_kind"]["segment"]["objects"], 2 + 2 + 2);
    assert_eq!(stat["by_kind"]["playlist"]["objects"], 3 + 2);
    assert_eq!(
        stat["by_kind"]["index"]["objects"], 3,
        "one parsed index per source"
    );
    assert_eq!(stat["oldest_access"], T0);
    assert_eq!(stat["newest_access"], T0 + 100);
    assert_eq!(stat["misses"], 14);
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
    assert_eq!(report["deleted"].as_array().unwrap().len(), 0);
    // A dry run lists without deleting.
    let dry = s.json(T0 + 3 * DAY + 10, &["gc", "--dry-run", "--json"]);
    assert_eq!(dry["deleted"].as_array().unwrap().len(), old.len());
    assert!(old.iter().all(|f| f.exists()));
    let report = s.json(T0 + 3 * DAY + 10, &["gc", "--json"]);
    assert_eq!(report["deleted"].as_array().unwrap().len(), old.len());
    assert!(report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["reason"] == "ttl"));
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
    assert_eq!(report["deleted"].as_array().unwrap().len(), young.len());
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
    assert!(report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["reason"] == "size"));
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
    let report = s.json(T0, &["gc", "--json"]);
    assert_eq!(report["orphans_removed"], 2);
    assert!(!orphan.exists() && young_orphan.exists());
    assert_eq!(s.stat()["objects"], files.len() - 1);
}

#[test]
fn invalidate_by_glob_age_all_and_hard() {
    let s = setup();
    s.warm(T0, "films/a_,hi,lo,.mp4.csmil");
    s.warm(T0 + DAY, "films/radio.m4a");
    let count = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap();
    // By glob: every object made from a_hi.mp4 (its playlist, segments and
    // the csmil master that lists it).
    let r = s.json(T0 + DAY, &["invalidate", "--json", "films/*_hi.mp4"]);
    assert_eq!(
        count(&r, "expired"),
        1 + 2 + 1 + 1,
        "playlist, segments, master, index"
    );
    assert_eq!(s.stat()["by_kind"]["segment"]["expired"], 2);
    // gc removes them...
    let gc = s.json(T0 + DAY, &["gc", "--json"]);
    assert!(gc["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["reason"] == "invalidated"));
    assert_eq!(gc["deleted"].as_array().unwrap().len(), 5);
    // ...and the next request makes them again.
    let warm = s.warm(T0 + DAY, "films/a_,hi,lo,.mp4.csmil");
    assert_eq!(
        (count(&warm, "made"), count(&warm, "already_cached")),
        (4, 3)
    );
    // By age: only what was made more than 12 h before.
    let r = s.json(
        T0 + DAY + 3600,
        &["invalidate", "--json", "--older-than", "12h"],
    );
    assert_eq!(
        count(&r, "expired"),
        4,
        "the lo rendition's playlist, segments and index, made at T0"
    );
    // Hard: files go now.
    let before = s.files().len();
    let r = s.json(
        T0 + DAY,
        &["invalidate", "--json", "--hard", "films/radio.m4a"],
    );
    assert_eq!(
        count(&r, "deleted"),
        5,
        "master, playlist, 2 segments, index"
    );
    assert_eq!(s.files().len(), before - 5);
    // All.
    let r = s.json(T0 + DAY, &["invalidate", "--json", "--all", "--hard"]);
    assert_eq!(count(&r, "deleted") as usize, before - 5);
    assert!(s.files().is_empty());
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
    assert_eq!(summary["made"], 4);
    assert_eq!(s.warm(T0, "films/a_hi.mp4")["already_cached"], 4);
}
