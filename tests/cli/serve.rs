//! `casterpak serve`: every URL form, HTTP behaviour a CDN relies on, error
//! codes, path traversal, replaced sources, concurrent cold requests, and a
//! whole stream decoded through the server by ffprobe.

use std::fs;
use std::io::BufReader;
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use crate::http_client::{read_reply, request, send, Server};
use crate::support::{ffprobe_count, fixture, make_big_source, SmallDisk};

/// A media root with renditions for a csmil URL (one of them missing), an
/// audio-only file, a truncated file and a symlink leading outside.
struct Media {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    root: PathBuf,
    cache: PathBuf,
}

fn media() -> Media {
    let root_dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = root_dir.path().join("media");
    fs::create_dir_all(root.join("films")).unwrap();
    fs::copy(
        fixture("h264-aac-bframes.mp4"),
        root.join("films/a_1500k.mp4"),
    )
    .unwrap();
    fs::copy(fixture("hevc-aac.mp4"), root.join("films/a_.mp4")).unwrap();
    fs::copy(fixture("aac-only.m4a"), root.join("films/audio.m4a")).unwrap();
    fs::copy(fixture("ac3.mp4"), root.join("top.mp4")).unwrap();
    let data = fs::read(fixture("h264-aac-bframes.mp4")).unwrap();
    fs::write(root.join("films/broken.mp4"), &data[..data.len() / 2]).unwrap();
    // Broken for good, not being written: modified an hour ago.
    set_age(&root.join("films/broken.mp4"), 3600);
    fs::write(outside.path().join("secret.mp4"), b"SECRET").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.mp4"),
        root.join("films/escape.mp4"),
    )
    .unwrap();
    fs::write(root_dir.path().join("passwd"), b"SECRET").unwrap();
    let cache = root_dir.path().join("cache");
    Media {
        _dirs: (root_dir, outside),
        root,
        cache,
    }
}

/// Sets the modification time of `path` to `seconds` ago.
fn set_age(path: &Path, seconds: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(seconds);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// These tests count misses and stored objects: nothing is made ahead of
/// a request here (that is tests/cli/prefetch.rs).
const NO_PREFETCH: (&str, &str) = ("CASTERPAK_SERVER_PREFETCH", "0");

fn start(m: &Media) -> Server {
    Server::start_with_env(&m.root, &m.cache, &[], &[NO_PREFETCH])
}

/// As [`start`], with the debug log written to `log`.
fn start_debug_logging(m: &Media, log: &Path) -> Server {
    Server::start_logging(
        &m.root,
        &m.cache,
        &[("RUST_LOG", "casterpak=debug"), NO_PREFETCH],
        log,
    )
}

#[test]
fn single_file_urls() {
    let m = media();
    let s = start(&m);
    let master = s.get("/i/films/a_1500k.mp4/master.m3u8");
    assert_eq!(master.status, 200);
    assert_eq!(
        master.header("Content-Type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert!(
        master.text().contains("\nindex_0_av.m3u8\n"),
        "{}",
        master.text()
    );
    let playlist = s.get("/i/films/a_1500k.mp4/index_0_av.m3u8");
    assert_eq!(playlist.status, 200);
    assert!(playlist.text().contains("\nsegment2_0_av.ts\n"));
    let segment =
        s.get("/i/films/a_1500k.mp4/segment2_0_av.ts?hdnea=st=1~exp=2~acl=/*~hmac=ab&null=0");
    assert_eq!(segment.status, 200);
    assert_eq!(segment.header("Content-Type"), Some("video/mp2t"));
    assert_eq!(segment.body[0], 0x47);
    assert_eq!(segment.body.len() % 188, 0);
    // Audio only has `_a` names; asking for the wrong kind is a 404.
    assert!(s
        .get("/i/films/audio.m4a/master.m3u8")
        .text()
        .contains("index_0_a.m3u8"));
    assert_eq!(s.get("/i/films/audio.m4a/segment1_0_a.ts").status, 200);
    assert_eq!(s.get("/i/films/audio.m4a/segment1_0_av.ts").status, 404);
    assert_eq!(
        s.get("/i/films/a_1500k.mp4/segment3_0_av.ts").status,
        404,
        "only 2 segments"
    );
    assert_eq!(s.get("/i/films/a_1500k.mp4/index_1_av.m3u8").status, 404);
    // The raw MP4 is not served.
    assert_eq!(s.get("/i/films/a_1500k.mp4").status, 404);
    assert_eq!(
        s.get("/elsewhere/films/a_1500k.mp4/master.m3u8").status,
        404
    );
}

#[test]
fn csmil_urls() {
    let m = media();
    let s = start(&m);
    // a_1500k.mp4, a_.mp4 (empty label), a_600k.mp4 (missing: left out).
    let master = s.get("/i/films/a_,1500k,,600k,.mp4.csmil/master.m3u8");
    assert_eq!(master.status, 200);
    let text = master.text();
    let uris: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uris, ["index_0_av.m3u8", "index_1_av.m3u8"]);
    assert!(
        text.contains("avc1.64000d") && text.contains("hvc1.1.6.L60.90"),
        "{text}"
    );
    let second = s.get("/i/films/a_,1500k,,600k,.mp4.csmil/index_1_av.m3u8");
    assert!(second.text().contains("segment2_1_av.ts"));
    let seg = s.get("/i/films/a_,1500k,,600k,.mp4.csmil/segment2_1_av.ts");
    assert_eq!(seg.status, 200);
    // The same bytes as through the single-file URL of that rendition.
    assert_eq!(seg.body, s.get("/i/films/a_.mp4/segment2_0_av.ts").body);
    assert_eq!(
        s.get("/i/films/a_,1500k,,600k,.mp4.csmil/index_2_av.m3u8")
            .status,
        404
    );
    assert_eq!(
        s.get("/i/films/x_,1,2,.mp4.csmil/master.m3u8").status,
        404,
        "none exists"
    );
    // A csmil directly under the root.
    assert_eq!(s.get("/i/,top,.mp4.csmil/master.m3u8").status, 200);
}

#[test]
fn absolute_uris_with_base_url() {
    let m = media();
    let s = Server::start_with_env(
        &m.root,
        &m.cache,
        &[],
        &[("CASTERPAK_SERVER_BASE_URL", "https://cdn.example.com/")],
    );
    let master = s.get("/i/films/a_1500k.mp4/master.m3u8").text();
    assert!(
        master.contains("\nhttps://cdn.example.com/i/films/a_1500k.mp4/index_0_av.m3u8\n"),
        "{master}"
    );
    let playlist = s.get("/i/films/a_1500k.mp4/index_0_av.m3u8").text();
    assert!(
        playlist.contains("\nhttps://cdn.example.com/i/films/a_1500k.mp4/segment1_0_av.ts\n"),
        "{playlist}"
    );
}

#[test]
fn http_as_a_cdn_origin_needs_it() {
    let m = media();
    let s = start(&m);
    let path = "/i/films/a_1500k.mp4/segment1_0_av.ts";
    let full = s.get(path);
    assert_eq!(full.status, 200);
    assert!(
        full.body.len() > 32 << 10,
        "big enough that tiny_http would chunk it"
    );
    assert_eq!(full.header("X-Cache"), Some("MISS"));
    assert_eq!(full.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(full.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(full.header("Cache-Control"), Some("public, max-age=86400"));
    let etag = full.header("ETag").unwrap().to_string();
    let modified = full.header("Last-Modified").unwrap().to_string();

    let head = request(&s.addr, "HEAD", path, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Length"),
        Some(full.body.len().to_string().as_str())
    );
    assert_eq!(head.header("X-Cache"), Some("HIT"));

    let len = full.body.len();
    let part = request(&s.addr, "GET", path, &[("Range", "bytes=100-299")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &full.body[100..300]);
    assert_eq!(
        part.header("Content-Range"),
        Some(format!("bytes 100-299/{len}").as_str())
    );
    let tail = request(&s.addr, "GET", path, &[("Range", "bytes=-188")]);
    assert_eq!(tail.body, &full.body[len - 188..]);
    let open = request(
        &s.addr,
        "GET",
        path,
        &[("Range", &format!("bytes={}-", len - 10))],
    );
    assert_eq!(open.body, &full.body[len - 10..]);
    let beyond = request(&s.addr, "GET", path, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("Content-Range"),
        Some(format!("bytes */{len}").as_str())
    );
    // It answers this request's Range: a CDN must not keep it for the URL.
    assert_eq!(beyond.header("Cache-Control"), Some("no-store"));
    let with_body = request(&s.addr, "GET", path, &[("Content-Length", "5")]);
    assert_eq!(with_body.status, 413);
    assert_eq!(with_body.header("Cache-Control"), Some("no-store"));
    assert_eq!(with_body.header("Connection"), Some("close"));
    // A range on a miss (the bytes come from memory, not the file).
    let miss_part = request(
        &s.addr,
        "GET",
        "/i/films/a_1500k.mp4/segment2_0_av.ts",
        &[("Range", "bytes=0-187")],
    );
    assert_eq!((miss_part.status, miss_part.body.len()), (206, 188));
    assert_eq!(miss_part.header("X-Cache"), Some("MISS"));

    assert_eq!(
        request(&s.addr, "GET", path, &[("If-None-Match", &etag)]).status,
        304
    );
    assert_eq!(
        request(&s.addr, "GET", path, &[("If-None-Match", "\"other\"")]).status,
        200
    );
    assert_eq!(
        request(&s.addr, "GET", path, &[("If-Modified-Since", &modified)]).status,
        304
    );
    assert_eq!(
        request(
            &s.addr,
            "GET",
            path,
            &[("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")]
        )
        .status,
        200
    );

    let preflight = request(
        &s.addr,
        "OPTIONS",
        path,
        &[
            ("Origin", "https://player.example"),
            ("Access-Control-Request-Headers", "range"),
        ],
    );
    assert_eq!(preflight.status, 204);
    assert!(preflight
        .header("Access-Control-Allow-Headers")
        .unwrap()
        .contains("Range"));
    let post = request(&s.addr, "POST", path, &[("Content-Length", "0")]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD, OPTIONS"));
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let m = media();
    let s = start(&m);
    let stream = TcpStream::connect(&s.addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for (path, status) in [
        ("/i/films/a_1500k.mp4/master.m3u8", 200),
        ("/i/films/a_1500k.mp4/segment1_0_av.ts", 200),
        ("/i/films/nope.mp4/master.m3u8", 404),
        ("/i/films/a_1500k.mp4/index_0_av.m3u8", 200),
    ] {
        send(&mut writer, "GET", path, &[], false);
        let reply = read_reply(&mut reader, false);
        assert_eq!(reply.status, status, "{path}");
    }
}

#[test]
fn errors_map_to_statuses_and_never_take_the_server_down() {
    let m = media();
    let s = start(&m);
    let broken = s.get("/i/films/broken.mp4/master.m3u8");
    assert_eq!(broken.status, 422);
    assert!(
        broken.text().contains("films/broken.mp4: corrupt media")
            && broken.text().contains("truncated"),
        "{}",
        broken.text()
    );
    assert_eq!(broken.text().lines().count(), 1);
    assert_eq!(s.get("/i/films/missing.mp4/master.m3u8").status, 404);
    assert_eq!(s.get("/i/films/a%zz.mp4/master.m3u8").status, 400);
    assert_eq!(
        s.get("/i/films/a_1500k.mp4/segment99999999999_0_av.ts")
            .status,
        404
    );
    // Still fine afterwards.
    assert_eq!(s.get("/i/films/a_1500k.mp4/master.m3u8").status, 200);
}

#[test]
fn path_traversal_never_reads_outside_the_root() {
    let m = media();
    let s = start(&m);
    // Malformed paths are 400; paths that are well-formed but lead
    // nowhere allowed (a symlink out of the root) are 404.
    for (path, status) in [
        ("/i/../passwd/master.m3u8", 400),
        ("/i/%2e%2e/passwd/master.m3u8", 400),
        ("/i/films/%2E%2E/%2E%2E/passwd/master.m3u8", 400),
        ("/i/films/..%2f..%2fpasswd/master.m3u8", 400),
        ("/i//etc/passwd/master.m3u8", 400),
        ("/i/%2Fetc%2Fpasswd/master.m3u8", 400),
        ("/i/films/escape.mp4/master.m3u8", 404),
        ("/i/films/escape.mp4/segment1_0_av.ts", 404),
        ("/i/films/,escape,.mp4.csmil/master.m3u8", 404),
        ("/i/films/..%5c..%5cpasswd/master.m3u8", 400),
    ] {
        let reply = s.get(path);
        assert_eq!(reply.status, status, "{path}");
        assert!(!reply.text().contains("SECRET"), "{path}");
    }
}

#[test]
fn a_replaced_source_is_never_answered_from_stale_entries() {
    let m = media();
    let s = start(&m);
    let file = m.root.join("films/a_1500k.mp4");
    let before = s.get("/i/films/a_1500k.mp4/index_0_av.m3u8");
    let seg_before = s.get("/i/films/a_1500k.mp4/segment1_0_av.ts");
    assert_eq!(
        s.get("/i/films/a_1500k.mp4/segment1_0_av.ts")
            .header("X-Cache"),
        Some("HIT")
    );
    // Replace it (a new file renamed over the old, as deployments do).
    let replacement = m.root.join("films/.new.mp4");
    fs::copy(fixture("hevc-aac.mp4"), &replacement).unwrap();
    fs::rename(&replacement, &file).unwrap();
    let after = s.get("/i/films/a_1500k.mp4/index_0_av.m3u8");
    assert_ne!(after.header("ETag"), before.header("ETag"));
    assert_ne!(after.body, before.body, "8 s file: other durations");
    let seg_after = s.get("/i/films/a_1500k.mp4/segment1_0_av.ts");
    assert_eq!(seg_after.header("X-Cache"), Some("MISS"));
    assert_ne!(seg_after.body, seg_before.body);
}

#[test]
fn concurrent_misses_for_one_segment_package_it_once() {
    let m = media();
    let s = start(&m);
    let path = "/i/films/a_1500k.mp4/segment1_0_av.ts";
    let replies: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16).map(|_| scope.spawn(|| s.get(path))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let states: Vec<&str> = replies
        .iter()
        .map(|r| r.header("X-Cache").unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "MISS").count(),
        1,
        "{states:?}"
    );
    assert!(replies
        .iter()
        .all(|r| r.status == 200 && r.body == replies[0].body));
}

#[test]
fn the_cache_survives_a_restart() {
    let m = media();
    let path = "/i/films/a_1500k.mp4/segment2_0_av.ts";
    let first = start(&m).get(path);
    assert_eq!(first.header("X-Cache"), Some("MISS"));
    let again = start(&m).get(path);
    assert_eq!(again.header("X-Cache"), Some("HIT"));
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("ETag"), first.header("ETag"));
}

#[test]
fn a_corrupted_cache_file_is_made_again() {
    let m = media();
    let path = "/i/films/a_1500k.mp4/segment1_0_av.ts";
    let first = start(&m).get(path);
    // Truncate every cached object behind the server's back.
    for entry in walk(&m.cache.join("objects")) {
        let f = fs::OpenOptions::new().write(true).open(&entry).unwrap();
        f.set_len(10).unwrap();
    }
    let s = start(&m);
    let again = s.get(path);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("X-Cache"), Some("MISS"));
}

/// Objects in `cache` but parsed indexes (stored in the background, after
/// the answer that read them).
fn stored_objects(cache: &Path) -> usize {
    walk(&cache.join("objects"))
        .iter()
        .filter(|p| p.extension().is_none_or(|e| e != "idx"))
        .count()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn ffprobe_decodes_the_stream_through_the_server() {
    let m = media();
    let s = start(&m);
    let source = m.root.join("films/a_1500k.mp4");
    let url = format!("http://{}/i/films/a_1500k.mp4/master.m3u8", s.addr);
    let url = Path::new(&url);
    assert_eq!(
        ffprobe_count(url, "v:0", true),
        ffprobe_count(&source, "v:0", false)
    );
    assert_eq!(
        ffprobe_count(url, "a:0", false),
        ffprobe_count(&source, "a:0", false)
    );
}

#[test]
fn a_restarted_server_reuses_the_parsed_index_from_the_cache() {
    let m = media();
    let log = m.cache.with_extension("log");
    let index_log = |server: Server| {
        drop(server);
        fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("index"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let s = start_debug_logging(&m, &log);
    let expected = s.get("/i/films/a_1500k.mp4/segment2_0_av.ts").body;
    let lines = index_log(s);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("films/a_1500k.mp4: index read from the file")),
        "{lines:?}"
    );
    // A new process has nothing in memory: the index comes from the cache.
    let s = start_debug_logging(&m, &log);
    assert_eq!(s.get("/i/films/a_1500k.mp4/segment1_0_av.ts").status, 200);
    let lines = index_log(s);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("films/a_1500k.mp4: index from the cache")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("read from the file")),
        "{lines:?}"
    );
    // A cached index that is not one (same size, other bytes) is read
    // again from the file, and the segments come out the same.
    for object in walk(&m.cache.join("objects")) {
        match object.extension().and_then(|e| e.to_str()) {
            Some("idx") => {
                let len = fs::metadata(&object).unwrap().len() as usize;
                fs::write(&object, vec![0x5a; len]).unwrap();
            }
            // Segments must be made again, so that the index is needed.
            Some("ts") => fs::remove_file(&object).unwrap(),
            _ => {}
        }
    }
    let s = start_debug_logging(&m, &log);
    let again = s.get("/i/films/a_1500k.mp4/segment2_0_av.ts");
    assert_eq!((again.status, &again.body), (200, &expected));
    let lines = index_log(s);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("films/a_1500k.mp4: index read from the file")),
        "{lines:?}"
    );
}

#[test]
fn a_stalled_client_is_cut_off_and_does_not_hold_up_the_others() {
    use std::io::{Read, Write};
    let m = media();
    let log = m.cache.with_extension("log");
    // A one-second send timeout, and one segment of the whole file.
    let s = Server::start_logging(
        &m.root,
        &m.cache,
        &[
            ("RUST_LOG", "access=info"),
            ("CASTERPAK_SERVER_SEND_TIMEOUT", "1"),
            ("CASTERPAK_MEDIA_SEGMENT_DURATION", "60"),
        ],
        &log,
    );
    let path = "/i/films/a_1500k.mp4/segment1_0_av.ts";
    let whole = s.get(path).body;
    const PIPELINED: usize = 200;
    assert!(
        whole.len() * PIPELINED > 8 << 20,
        "more than the socket buffers of both ends hold"
    );
    // A client with a tiny receive window that asks and never reads: the
    // server's writes stall once the socket buffers are full.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    socket
        .connect(&s.addr.parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    let mut stalled: std::net::TcpStream = socket.into();
    let pipelined = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(PIPELINED);
    stalled.write_all(pipelined.as_bytes()).unwrap();
    // Others are answered meanwhile.
    for _ in 0..3 {
        assert_eq!(s.get("/i/films/a_1500k.mp4/master.m3u8").status, 200);
        assert_eq!(s.get(path).body, whole);
    }
    // Past the send timeout the stalled connection is closed: reading it
    // now gives what was sent before the cut, far less than was asked for.
    std::thread::sleep(std::time::Duration::from_secs(3));
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut received = Vec::new();
    let end = stalled.read_to_end(&mut received);
    assert!(
        end.is_ok()
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server closed the connection: {end:?}"
    );
    assert!(
        received.len() < whole.len() * PIPELINED / 2,
        "cut off after {} bytes",
        received.len()
    );
    // The access log says the response was cut, and how far it got.
    drop(s);
    let logged = fs::read_to_string(&log).unwrap();
    let cut: Vec<&str> = logged.lines().filter(|l| l.ends_with(" cut")).collect();
    assert_eq!(cut.len(), 1, "one response cut off: {logged}");
    assert!(
        cut[0].contains(" 200 ") && !cut[0].contains(&format!(" {0}/{0} ", whole.len())),
        "{}",
        cut[0]
    );
}

#[test]
fn a_wrong_configuration_key_or_value_stops_startup_naming_it() {
    let m = media();
    let run = |env: (&str, &str)| {
        crate::support::casterpak()
            .env(env.0, env.1)
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(&m.root)
            .arg("--cache-dir")
            .arg(&m.cache)
            .timeout(std::time::Duration::from_secs(20))
            .assert()
            .failure()
    };
    run(("CASTERPAK_SERVER_LISEN", "x"))
        .stderr(predicates::str::contains("CASTERPAK_SERVER_LISEN"));
    run(("CASTERPAK_SERVER_WORKERS", "many"))
        .stderr(predicates::str::contains("CASTERPAK_SERVER_WORKERS"))
        .stderr(predicates::str::contains("server.workers"));
    run(("CASTERPAK_SERVER_PREFIX", "hls")).stderr(predicates::str::contains("server.prefix"));
    let file = m.cache.with_extension("toml");
    fs::write(&file, "[media]\nsegment_duraton = 4\n").unwrap();
    crate::support::casterpak()
        .arg("--config")
        .arg(&file)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicates::str::contains("segment_duraton"));
}

#[test]
fn a_source_being_written_gets_503_and_a_corrupt_one_is_not_read_again() {
    let m = media();
    let log = m.cache.with_extension("log");
    let s = start_debug_logging(&m, &log);
    // Half a file, written just now: a copy in progress.
    let good = fs::read(fixture("h264-aac-bframes.mp4")).unwrap();
    let copying = m.root.join("films/copying.mp4");
    fs::write(&copying, &good[..good.len() / 2]).unwrap();
    let reply = s.get("/i/films/copying.mp4/master.m3u8");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("Retry-After"), Some("5"));
    assert_eq!(reply.header("Cache-Control"), Some("no-store"));
    // The copy completes: answered at once, nothing remembered of it.
    fs::write(&copying, &good).unwrap();
    assert_eq!(s.get("/i/films/copying.mp4/master.m3u8").status, 200);
    // A file broken for good (modified an hour ago) is 422, briefly
    // cacheable, and its failure is remembered rather than read again.
    for _ in 0..3 {
        let broken = s.get("/i/films/broken.mp4/master.m3u8");
        assert_eq!(broken.status, 422);
        assert_eq!(broken.header("Cache-Control"), Some("public, max-age=10"));
    }
    // Replaced by a good file (a new identity), it is read again.
    let fixed = m.root.join("films/.fixed.mp4");
    fs::write(&fixed, &good).unwrap();
    fs::rename(&fixed, m.root.join("films/broken.mp4")).unwrap();
    assert_eq!(s.get("/i/films/broken.mp4/master.m3u8").status, 200);
    drop(s);
    let logged = fs::read_to_string(&log).unwrap();
    let remembered = logged
        .lines()
        .filter(|l| l.contains("films/broken.mp4: failed recently, not read again"))
        .count();
    assert_eq!(remembered, 2, "{logged}");
}

#[test]
fn a_failure_is_read_again_every_time_when_failure_ttl_is_0() {
    let m = media();
    let log = m.cache.with_extension("log");
    let s = Server::start_logging(
        &m.root,
        &m.cache,
        &[
            ("RUST_LOG", "casterpak=debug"),
            ("CASTERPAK_MEDIA_FAILURE_TTL", "0"),
        ],
        &log,
    );
    for _ in 0..2 {
        assert_eq!(s.get("/i/films/broken.mp4/master.m3u8").status, 422);
    }
    drop(s);
    let logged = fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("not read again"), "{logged}");
}

#[test]
#[cfg_attr(casterpak_not_root, ignore = "needs root (mounts a small tmpfs)")]
fn a_full_cache_disk_still_answers_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    fs::create_dir(&root).unwrap();
    for n in 0..12 {
        fs::copy(
            fixture("h264-aac-bframes.mp4"),
            root.join(format!("film{n}.mp4")),
        )
        .unwrap();
    }
    let cache = dir.path().join("cache");
    let _disk = SmallDisk::mount(&cache, "1m");
    let log = dir.path().join("serve.log");
    // One segment of the whole file, about 180 kB: a few fill the disk.
    let s = Server::start_logging(
        &root,
        &cache,
        &[
            ("RUST_LOG", "warn"),
            ("CASTERPAK_MEDIA_SEGMENT_DURATION", "60"),
        ],
        &log,
    );
    let first = s.get("/i/film0.mp4/segment1_0_av.ts");
    assert_eq!((first.status, first.header("X-Cache")), (200, Some("MISS")));
    // Stored after its answer: asked again, it is waited for, and a hit.
    let stored = s.get("/i/film0.mp4/segment1_0_av.ts");
    assert_eq!(stored.header("X-Cache"), Some("HIT"));
    for n in 1..12 {
        let reply = s.get(&format!("/i/film{n}.mp4/segment1_0_av.ts"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.body, first.body, "film{n}: whole, as if cached");
    }
    let stored = walk(&cache.join("objects"))
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "ts"))
        .count();
    assert!(stored < 12, "the disk took {stored} of 12 segments");
    // What was cached before the disk filled is still there, whole.
    let again = s.get("/i/film0.mp4/segment1_0_av.ts");
    assert_eq!(
        (again.header("X-Cache"), &again.body),
        (Some("HIT"), &first.body)
    );
    drop(s);
    let logged = fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("not cached"))
        .collect();
    assert_eq!(warnings.len(), 1, "logged once a minute at most: {logged}");
    assert!(
        warnings[0].contains("No space left on device") || warnings[0].contains("disk is full"),
        "the cause: {}",
        warnings[0]
    );
}

#[test]
#[cfg_attr(casterpak_not_root, ignore = "needs root (mounts a small tmpfs)")]
fn serve_keeps_min_free_on_the_cache_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    fs::create_dir(&root).unwrap();
    for n in 0..16 {
        fs::copy(
            fixture("h264-aac-bframes.mp4"),
            root.join(format!("film{n}.mp4")),
        )
        .unwrap();
    }
    let disk = SmallDisk::mount(&dir.path().join("small"), "8m");
    // Leave 4 MB free, with a floor of 1.5 MB: sixteen segments of about
    // 180 kB (and their indexes) all fit, and go below it.
    let avail = free_bytes(&disk.dir);
    fs::write(
        disk.dir.join("ballast"),
        vec![0u8; (avail - (4 << 20)) as usize],
    )
    .unwrap();
    const FLOOR: u64 = 1536 << 10;
    let s = Server::start_with_env(
        &root,
        &disk.dir.join("cache"),
        &[],
        &[
            ("CASTERPAK_MEDIA_SEGMENT_DURATION", "60"),
            ("CASTERPAK_CACHE_MIN_FREE", "1536K"),
            ("CASTERPAK_CACHE_GC_INTERVAL", "1"),
        ],
    );
    let mut went_below = false;
    for n in 0..16 {
        let reply = s.get(&format!("/i/film{n}.mp4/segment1_0_av.ts"));
        assert_eq!(reply.status, 200);
        went_below |= free_bytes(&disk.dir) < FLOOR;
        if n == 7 {
            // Access times are in seconds: the second half is newer.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
    }
    assert!(
        went_below,
        "the segments took the free space below the floor"
    );
    // gc (every second here) deletes least recently used objects until
    // free space is back above the floor.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while free_bytes(&disk.dir) < FLOOR && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        free_bytes(&disk.dir) >= FLOOR,
        "free space back above the floor"
    );
    // The most recently used stayed.
    let last = s.get("/i/film15.mp4/segment1_0_av.ts");
    assert_eq!(last.header("X-Cache"), Some("HIT"));
}

fn free_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

/// A csmil URL may list its renditions in any order, repeated or missing,
/// and each is a master of its own: stored, anonymous clients could fill
/// the cache with them (a flood of such URLs grew it by 1.4 GB in 20 s).
#[test]
fn csmil_masters_in_any_order_do_not_fill_the_cache() {
    let m = media();
    let s = start(&m);
    assert_eq!(
        s.get("/i/films/a_,1500k,,.mp4.csmil/master.m3u8").status,
        200
    );
    let before = stored_objects(&m.cache);
    for n in 1..=64 {
        let labels: Vec<&str> = (0..n).map(|i| ["1500k", "", "missing"][i % 3]).collect();
        let url = format!("/i/films/a_,{},.mp4.csmil/master.m3u8", labels.join(","));
        let reply = s.get(&url);
        assert_eq!(reply.status, 200, "{url}");
    }
    assert_eq!(stored_objects(&m.cache), before, "nothing stored");
}

/// With `server.base_url`, a media playlist's URIs carry the URL's whole
/// directory, csmil labels included: such playlists are not stored either.
#[test]
fn playlists_with_absolute_uris_do_not_fill_the_cache() {
    let m = media();
    let s = Server::start_with_env(
        &m.root,
        &m.cache,
        &[],
        &[
            ("CASTERPAK_SERVER_BASE_URL", "https://cdn.example.com"),
            NO_PREFETCH,
        ],
    );
    let segment = "/i/films/a_1500k.mp4/segment1_0_av.ts";
    assert_eq!(s.get(segment).status, 200);
    // Stored after its answer: asked again, it is waited for, and a hit.
    assert_eq!(s.get(segment).header("X-Cache"), Some("HIT"));
    let before = stored_objects(&m.cache);
    for n in 0..32 {
        let url = format!("/i/films/a_,1500k,x{n},.mp4.csmil/index_0_av.m3u8");
        let reply = s.get(&url);
        assert_eq!(reply.status, 200, "{url}");
        assert!(reply
            .text()
            .contains(&format!("x{n},.mp4.csmil/segment1_0_av.ts")));
    }
    assert_eq!(stored_objects(&m.cache), before, "nothing stored");
}

/// SIGTERM: the server exits at once, with 0, and what it read before
/// (the index, stored in the background after the answer) is in the cache
/// for the next process.
#[test]
fn sigterm_stops_the_server_after_it_stores_the_indexes_it_read() {
    let m = media();
    let mut s = start(&m);
    assert_eq!(s.get("/i/films/a_1500k.mp4/master.m3u8").status, 200);
    let status = s.terminate(std::time::Duration::from_secs(5));
    assert!(
        status.is_some_and(|st| st.success()),
        "exited with 0 within 5 s: {status:?}"
    );
    let indexes = walk(&m.cache.join("objects"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .count();
    assert_eq!(indexes, 1, "the index of the one source read");
}

/// Seconds since midnight of a log line's timestamp
/// (`2026-01-02T03:04:05.678901Z ...`).
fn logged_at(line: &str) -> f64 {
    let time = line.split('T').nth(1).and_then(|t| t.split('Z').next());
    let time = time.unwrap_or_else(|| panic!("no timestamp in {line}"));
    time.split(':')
        .map(|part| part.parse::<f64>().unwrap())
        .fold(0.0, |seconds, part| seconds * 60.0 + part)
}

/// A player's first requests come right after the master: the index that
/// master read is stored a second later, not beside them.
#[test]
fn an_index_is_stored_a_second_after_it_was_read() {
    let m = media();
    let log = m.cache.with_extension("log");
    let s = start_debug_logging(&m, &log);
    assert_eq!(s.get("/i/films/a_1500k.mp4/master.m3u8").status, 200);
    let line = |what: &str| {
        fs::read_to_string(&log)
            .unwrap()
            .lines()
            .find(|l| l.contains(&format!("films/a_1500k.mp4: {what}")))
            .map(str::to_string)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stored = loop {
        if let Some(stored) = line("index stored") {
            break stored;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no index stored in 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let read = line("index read from the file").expect("the index was read");
    // (Across midnight too.)
    let after = (logged_at(&stored) - logged_at(&read)).rem_euclid(86_400.0);
    assert!(
        (0.95..5.0).contains(&after),
        "stored {after:.3} s after it was read"
    );
}

/// SIGTERM while a large segment is going out: the download completes (up
/// to 30 s), nothing new is accepted, and the server then exits with 0.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg")]
fn sigterm_lets_a_download_in_flight_finish_then_exits_0() {
    use std::io::{Read, Write};
    let m = media();
    // Over 8 MB in one segment: more than the socket buffers of both ends
    // hold.
    make_big_source(&m.root.join("big.mp4"), 4);
    let mut s = Server::start_with_env(
        &m.root,
        &m.cache,
        &[],
        &[NO_PREFETCH, ("CASTERPAK_MEDIA_SEGMENT_DURATION", "60")],
    );
    let path = "/i/big.mp4/segment1_0_v.ts";
    let whole = s.get(path).body;
    assert!(
        whole.len() > 6 << 20,
        "{} bytes: {}",
        whole.len(),
        String::from_utf8_lossy(&whole)
    );
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(&s.addr.parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    let mut download: TcpStream = socket.into();
    write!(download, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut received = vec![0; 64 << 10];
    download.read_exact(&mut received).unwrap();
    // SIGTERM, the download part way.
    // SAFETY: kill takes a pid and a signal number.
    unsafe {
        libc::kill(s.pid() as libc::pid_t, libc::SIGTERM);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(s.is_running(), "still sending");
    assert!(
        TcpStream::connect(&s.addr).is_err(),
        "no new connection is accepted"
    );
    download
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    download.read_to_end(&mut received).unwrap();
    let reply = read_reply(&mut BufReader::new(&received[..]), false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), whole.len(), "the whole segment");
    assert!(reply.body == whole);
    let status = s.terminate(std::time::Duration::from_secs(10));
    assert!(
        status.is_some_and(|st| st.success()),
        "exited with 0: {status:?}"
    );
}

/// A stored media playlist is also kept in memory: the next request is
/// answered from there (it still counts as a hit), even once its cache
/// file is gone behind the server's back.
#[test]
fn media_playlist_hits_come_from_memory() {
    let m = media();
    let s = start(&m);
    let path = "/i/films/a_1500k.mp4/index_0_av.m3u8";
    let first = s.get(path);
    assert_eq!(first.status, 200);
    let stored: Vec<PathBuf> = walk(&m.cache.join("objects"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "m3u8"))
        .collect();
    assert_eq!(stored.len(), 1, "the playlist is stored");
    fs::remove_file(&stored[0]).unwrap();
    let again = s.get(path);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("ETag"), first.header("ETag"));
    assert!(!stored[0].exists(), "answered without making it again");
}

/// A cold segment is answered as soon as it is made, from memory, and
/// stored after its answer; the bytes are those of the cached copy.
#[test]
fn cold_segments_are_answered_before_they_are_stored() {
    let m = media();
    let log = m.cache.with_extension("log");
    let s = start_debug_logging(&m, &log);
    let mut cold = Vec::new();
    for k in [1, 2] {
        let reply = s.get(&format!("/i/films/a_1500k.mp4/segment{k}_0_av.ts"));
        assert_eq!(reply.header("X-Cache"), Some("MISS"));
        cold.push(reply.body);
    }
    let fragment = s.get("/cmaf/films/a_1500k.mp4/seg1_0_v.m4s");
    assert_eq!(fragment.header("X-Cache"), Some("MISS"));
    for (k, body) in cold.iter().enumerate() {
        let cached = s.get(&format!("/i/films/a_1500k.mp4/segment{}_0_av.ts", k + 1));
        assert_eq!(cached.header("X-Cache"), Some("HIT"));
        assert!(
            cached.body == *body,
            "segment {}: cold and cached differ",
            k + 1
        );
    }
    assert!(s.get("/cmaf/films/a_1500k.mp4/seg1_0_v.m4s").body == fragment.body);
    drop(s);
    let answered_first = fs::read_to_string(&log)
        .unwrap()
        .lines()
        // Stored once its answer had sent it ("answered in"), or when the
        // wait for that ran out ("not all answered in"); never as if no
        // answer had taken it.
        .filter(|l| l.contains(" answered in ") && l.contains(", then stored in"))
        .count();
    assert_eq!(answered_first, 3, "segments 1 and 2, fragment 1");
}

/// Every master with video lists an I-frame playlist: each segment's key
/// frame as a byte range of the segment. Each range, fetched alone,
/// decodes as one picture (ffprobe, ffmpeg with no error), and ends where
/// that picture's PES ends. Audio-only files have none.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn iframe_playlists_give_one_decodable_picture_per_byte_range() {
    let m = media();
    let s = start(&m);
    let dir = "/i/films/a_,1500k,,.mp4.csmil";
    let master = s.get(&format!("{dir}/master.m3u8")).text();
    let lines: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-I-FRAME-STREAM-INF"))
        .collect();
    assert_eq!(lines.len(), 2, "{master}");
    assert!(lines[0].contains("URI=\"iframes_0_av.m3u8\"") && lines[0].contains("CODECS=\"avc1."));
    let work = tempfile::tempdir().unwrap();
    for n in 0..2 {
        let playlist = s.get(&format!("{dir}/iframes_{n}_av.m3u8")).text();
        let ranges = crate::support::iframe_ranges(&playlist);
        for (i, &(len, at, uri)) in ranges.iter().enumerate() {
            assert_eq!((at, len % 188), (0, 0), "{uri}");
            let segment = s.get(&format!("{dir}/{uri}")).body;
            assert!(len <= segment.len());
            let file = work.path().join(format!("{n}-{i}.ts"));
            fs::write(&file, &segment[..len]).unwrap();
            assert_eq!(ffprobe_count(&file, "v:0", true), Some(1), "{uri}");
            assert_eq!(crate::support::decode_errors(&file), "", "{uri}");
            // It ends where the picture's PES ends: the next packet on the
            // video PID starts a new PES.
            let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
            // The payload, after the adaptation field if there is one.
            let payload = |p: &[u8]| -> usize {
                if p[3] & 0x20 != 0 {
                    5 + usize::from(p[4])
                } else {
                    4
                }
            };
            let video_pid = segment[..len]
                .chunks(188)
                .find(|p| {
                    let at = payload(p).min(188);
                    p[1] & 0x40 != 0 && p[at..].starts_with(&[0, 0, 1, 0xe0])
                })
                .map(pid)
                .expect("a video PES in the range");
            if let Some(next) = segment[len..].chunks(188).find(|p| pid(p) == video_pid) {
                assert!(
                    next[1] & 0x40 != 0,
                    "{uri}: the picture goes on past the range"
                );
            }
        }
        assert!(ranges.len() >= 2, "{playlist}");
    }
    // No video, no I-frame playlist.
    let audio = s.get("/i/films/audio.m4a/master.m3u8").text();
    assert!(!audio.contains("I-FRAME"), "{audio}");
    assert_eq!(s.get("/i/films/audio.m4a/iframes_0_a.m3u8").status, 404);
}
