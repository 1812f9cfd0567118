//! The shipped shield-cache tiers, run on loopback in front of two
//! casterpak origins: dist/varnish/casterpak.vcl (unmodified) by a real
//! Varnish, dist/nginx/casterpak.conf by a real nginx (its cache path and
//! port changed): hits, ranges, TTLs by kind, one origin per video, and an
//! origin going away.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::browser::{play, two_renditions};
use crate::http_client::{request, Reply, Server};
use crate::support::fixture;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// varnishd in the foreground on a free port, with the shipped VCL and an
/// origins file naming `origins` (host:port).
struct Varnish {
    child: Child,
    addr: String,
    workdir: PathBuf,
}

impl Varnish {
    fn start(dir: &Path, origins: &[&str]) -> Varnish {
        let vcl_dir = dir.join("vcl");
        fs::create_dir_all(&vcl_dir).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/varnish");
        fs::copy(shipped.join("casterpak.vcl"), vcl_dir.join("casterpak.vcl")).unwrap();
        let mut list = String::new();
        let mut init = String::from("sub vcl_init {\n");
        for (n, origin) in origins.iter().enumerate() {
            let (host, port) = origin.split_once(':').unwrap();
            list.push_str(&format!(
                "backend origin{n} {{ .host = \"{host}\"; .port = \"{port}\"; \
                 .probe = casterpak_health; }}\n"
            ));
            init.push_str(&format!("    origins.add_backend(origin{n});\n"));
        }
        init.push_str("}\n");
        fs::write(vcl_dir.join("casterpak-origins.vcl"), list + &init).unwrap();
        let workdir = dir.join("varnish");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("varnishd")
            .args(["-F", "-a", &addr, "-s", "malloc,64m", "-n"])
            .arg(&workdir)
            .arg("-f")
            .arg(vcl_dir.join("casterpak.vcl"))
            .arg("-p")
            .arg(format!("vcl_path={}", vcl_dir.display()))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("varnishd.log")).unwrap())
            .spawn()
            .expect("varnishd (Debian's varnish)");
        let varnish = Varnish {
            child,
            addr,
            workdir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(&varnish.addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "varnishd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        varnish
    }

    fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(&self.addr, "GET", path, headers)
    }

    /// `varnishadm backend.list`: each origin's name and health.
    fn health(&self) -> BTreeMap<String, String> {
        let out = Command::new("varnishadm")
            .arg("-n")
            .arg(&self.workdir)
            .arg("backend.list")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let name = fields.first()?.strip_prefix("boot.")?;
                Some((name.to_string(), fields.get(3)?.to_string()))
            })
            .collect()
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        // SAFETY: kill takes a pid and a signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// Two origins over one media root, each on its own cache, with their
/// access logs.
struct Origins {
    servers: Vec<Option<Server>>,
    logs: Vec<PathBuf>,
}

impl Origins {
    fn start(dir: &Path, root: &Path) -> Origins {
        Self::start_with(dir, root, &[])
    }

    /// With more environment (configuration) for each origin.
    fn start_with(dir: &Path, root: &Path, more: &[(&str, &str)]) -> Origins {
        let mut servers = Vec::new();
        let mut logs = Vec::new();
        for n in 0..2 {
            let log = dir.join(format!("origin{n}.log"));
            let mut env = vec![
                ("RUST_LOG", "warn,access=info"),
                ("CASTERPAK_MEDIA_SEGMENT_DURATION", "2"),
                ("CASTERPAK_SERVER_PREFETCH", "0"),
            ];
            env.extend_from_slice(more);
            let cache = dir.join(format!("cache{n}"));
            servers.push(Some(Server::start_logging(root, &cache, &env, &log)));
            logs.push(log);
        }
        Origins { servers, logs }
    }

    fn addrs(&self) -> Vec<&str> {
        self.servers
            .iter()
            .map(|o| o.as_ref().unwrap().addr.as_str())
            .collect()
    }

    /// Requests for `path` each origin logged (whatever their query
    /// strings).
    fn requests(&self, path: &str) -> Vec<usize> {
        let (plain, queried) = (format!("\"GET {path}\""), format!("\"GET {path}?"));
        self.logs
            .iter()
            .map(|log| {
                fs::read_to_string(log)
                    .unwrap()
                    .lines()
                    .filter(|l| l.contains(&plain) || l.contains(&queried))
                    .count()
            })
            .collect()
    }
}

/// Waits (at most 5 s) for `done`: an origin logs a request once its
/// response is all out, a moment after the client has it.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(5), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A media root of `videos` copies of a 10 s file (5 segments each).
fn videos(count: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    fs::create_dir_all(&root).unwrap();
    for v in 0..count {
        fs::copy(
            fixture("h264-aac-bframes.mp4"),
            root.join(format!("v{v}.mp4")),
        )
        .unwrap();
    }
    (dir, root)
}

/// Varnish in front of two origins.
struct Tier {
    // Dropped in this order: the directory they work in goes last.
    varnish: Varnish,
    origins: Origins,
    _dir: tempfile::TempDir,
}

fn tier(count: usize) -> Tier {
    let (dir, root) = videos(count);
    tier_over(dir, &root)
}

/// The tier over the media in `root`, working in `dir`.
fn tier_over(dir: tempfile::TempDir, root: &Path) -> Tier {
    let origins = Origins::start(dir.path(), root);
    let varnish = Varnish::start(dir.path(), &origins.addrs());
    Tier {
        varnish,
        origins,
        _dir: dir,
    }
}

impl Tier {
    /// Requests for `path` the origins logged, between them.
    fn origin_requests(&self, path: &str) -> usize {
        self.origins.requests(path).iter().sum()
    }
}

fn is_hit(reply: &Reply) -> bool {
    reply
        .header("X-Varnish")
        .is_some_and(|v| v.split_whitespace().count() == 2)
}

#[test]
#[cfg_attr(casterpak_no_varnish, ignore = "needs varnishd (Debian's varnish)")]
fn varnish_caches_each_object_once_with_its_ttl_and_ranges_from_the_cache() {
    let t = tier(1);
    let v = &t.varnish;
    let segment = "/i/v0.mp4/segment2_0_av.ts";
    let first = v.get_with(segment, &[("X-Casterpak-Debug", "1")]);
    assert_eq!(first.status, 200);
    assert!(!is_hit(&first));
    assert_eq!(first.header("X-Cache"), Some("MISS"));
    // Other cookies and query strings, the same object.
    let again = v.get_with(
        &format!("{segment}?token=abc&session=1"),
        &[("Cookie", "player=1"), ("X-Casterpak-Debug", "1")],
    );
    assert_eq!(again.status, 200);
    assert!(is_hit(&again), "{:?}", again.headers);
    assert_eq!(again.header("X-Cache"), Some("HIT"));
    assert!(again.header("Age").is_some());
    assert_eq!(again.body, first.body);
    eventually("the miss logged", || t.origin_requests(segment) == 1);
    // A week for a segment, a day for a playlist, 10 s for a 404.
    let ttl = |r: &Reply| -> f64 { r.header("X-Cache-TTL").unwrap().parse().unwrap() };
    assert!(
        (604_700.0..=604_800.0).contains(&ttl(&again)),
        "{}",
        ttl(&again)
    );
    let playlist = v.get_with("/i/v0.mp4/index_0_av.m3u8", &[("X-Casterpak-Debug", "1")]);
    assert_eq!(playlist.status, 200);
    assert!(
        (86_300.0..=86_400.0).contains(&ttl(&playlist)),
        "{}",
        ttl(&playlist)
    );
    let missing = v.get_with(
        "/i/nothing.mp4/index_0_av.m3u8",
        &[("X-Casterpak-Debug", "1")],
    );
    assert_eq!(missing.status, 404);
    assert!(ttl(&missing) <= 10.0, "{}", ttl(&missing));
    // Ranges, from the cached object.
    for (range, want) in [
        ("bytes=100-299", 100..300),
        ("bytes=0-0", 0..1),
        ("bytes=-188", first.body.len() - 188..first.body.len()),
    ] {
        let part = v.get_with(segment, &[("Range", range)]);
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.body, &first.body[want], "{range}");
    }
    assert_eq!(t.origin_requests(segment), 1, "ranges came from the cache");
    // A cold range: the origin is asked once, for the whole object.
    let cold = "/i/v0.mp4/segment3_0_av.ts";
    let part = v.get_with(cold, &[("Range", "bytes=188-375")]);
    assert_eq!((part.status, part.body.len()), (206, 188));
    let whole = v.get(cold);
    assert_eq!(&whole.body[188..376], &part.body[..]);
    eventually("the cold range logged", || t.origin_requests(cold) == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(t.origin_requests(cold), 1, "asked once");
    // Concurrent misses for one URL: one fetch (request collapsing).
    let collapsed = "/i/v0.mp4/segment4_0_av.ts";
    let bodies: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12).map(|_| scope.spawn(|| v.get(collapsed))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().body)
            .collect()
    });
    assert!(bodies.iter().all(|b| b == &bodies[0] && !b.is_empty()));
    eventually("the collapsed miss logged", || {
        t.origin_requests(collapsed) == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(t.origin_requests(collapsed), 1, "12 players, one fetch");
    // A master's filters make other masters, kept apart.
    let master = "/i/v0.mp4/master.m3u8";
    assert_eq!(v.get(master).status, 200);
    assert!(v.get(master).text().contains("index_0_av.m3u8"));
    assert_eq!(v.get(&format!("{master}?b=0-1")).status, 404);
    assert_eq!(v.get(&format!("{master}?x=1&b=0-100000")).status, 200);
    assert_eq!(v.get(&format!("{master}?b-in=1")).status, 404);
    for (query, uri) in [
        ("audio-only", "index_0_a.m3u8"),
        ("video-only=1", "index_0_v.m3u8"),
    ] {
        let switched = v.get(&format!("{master}?{query}")).text();
        assert!(
            switched.contains(uri) && !switched.contains("_av."),
            "{query}: {switched}"
        );
    }
    // Health is each origin's own, never cached.
    for _ in 0..2 {
        let health = v.get("/healthz");
        assert_eq!((health.status, is_hit(&health)), (200, false));
    }
}

/// Signed URLs and AES-128 through the tier: keys are never kept and
/// always checked at the origin; a segment is kept once whatever the
/// token; a playlist carrying a viewer's token is not kept.
#[test]
#[cfg_attr(casterpak_no_varnish, ignore = "needs varnishd (Debian's varnish)")]
fn tokens_and_keys_work_through_the_varnish_tier() {
    let (dir, root) = videos(1);
    let key = "00112233445566778899aabbccddeeff";
    let origins = Origins::start_with(
        dir.path(),
        &root,
        &[
            ("CASTERPAK_TOKENS_KEY", key),
            ("CASTERPAK_TOKENS_REQUIRED", "true"),
            ("CASTERPAK_PROTECTION_METHOD", "aes-128"),
            (
                "CASTERPAK_PROTECTION_SECRET",
                "ffeeddccbbaa99887766554433221100",
            ),
        ],
    );
    let v = Varnish::start(dir.path(), &origins.addrs());
    let token = |acl: &str| crate::support::signed_for(key, acl);
    let (a, b) = (token("/i/*"), token("/i/v0.mp4/*"));
    let key_path = "/i/v0.mp4/key_1_0.key";
    assert_eq!(v.get(key_path).status, 403);
    for _ in 0..2 {
        let reply = v.get(&format!("{key_path}?hdnea={a}"));
        assert_eq!((reply.status, reply.body.len()), (200, 16));
        assert!(!is_hit(&reply));
        assert_eq!(reply.header("Cache-Control"), Some("no-store"));
    }
    let cookie = format!("hdnea={b}");
    let by_cookie = v.get_with(key_path, &[("Cookie", &cookie)]);
    assert_eq!(by_cookie.status, 200, "the token cookie reaches the origin");
    eventually("every key request at an origin", || {
        origins.requests(key_path).iter().sum::<usize>() == 4
    });
    // A segment: fetched once, then served to the other token from here.
    let segment = "/i/v0.mp4/segment1_0_av_1.ts";
    let first = v.get(&format!("{segment}?hdnea={a}"));
    let second = v.get(&format!("{segment}?hdnea={b}"));
    assert_eq!((first.status, second.status), (200, 200));
    assert!(is_hit(&second) && second.body == first.body);
    // A playlist carries each viewer's token, so each gets their own.
    let playlist = "/i/v0.mp4/index_0_av.m3u8";
    let theirs = v.get(&format!("{playlist}?hdnea={a}"));
    let others = v.get(&format!("{playlist}?hdnea={b}"));
    assert!(theirs
        .text()
        .contains(&format!("segment1_0_av_1.ts?hdnea={a}")));
    assert!(others
        .text()
        .contains(&format!("segment1_0_av_1.ts?hdnea={b}")));
    assert!(!is_hit(&others));
    // While tokens are on no playlist is kept: one fetched with a cookie
    // would otherwise reach viewers whose players need the token carried.
    for _ in 0..2 {
        let by_cookie = v.get_with(playlist, &[("Cookie", &cookie)]);
        assert_eq!(by_cookie.status, 200);
        assert!(!is_hit(&by_cookie));
        assert!(by_cookie
            .header("Cache-Control")
            .unwrap()
            .starts_with("private"));
    }
}

#[test]
#[cfg_attr(casterpak_no_varnish, ignore = "needs varnishd (Debian's varnish)")]
fn each_video_stays_on_one_origin_and_moves_when_its_origin_goes() {
    let mut t = tier(16);
    let origin_of = |reply: &Reply| reply.header("X-Origin").unwrap().to_string();
    let mut by_video: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for v in 0..16 {
        let base = format!("/i/v{v}.mp4");
        let playlist = t.varnish.get(&format!("{base}/index_0_av.m3u8"));
        assert_eq!(playlist.status, 200);
        let names: Vec<String> = playlist
            .text()
            .lines()
            .filter(|l| l.starts_with("segment"))
            .map(String::from)
            .collect();
        assert_eq!(names.len(), 5);
        let origins = by_video.entry(v).or_default();
        origins.insert(origin_of(&playlist));
        for name in &names {
            let reply = t.varnish.get(&format!("{base}/{name}"));
            assert_eq!(reply.status, 200);
            origins.insert(origin_of(&reply));
        }
        assert_eq!(origins.len(), 1, "v{v}: {origins:?}");
    }
    let used: BTreeSet<&String> = by_video.values().flatten().collect();
    assert_eq!(used.len(), 2, "both origins take videos: {by_video:?}");
    // Origin 0 goes away. Its videos' uncached segments (the CMAF ones)
    // are answered by origin 1 from the first request on: a request that
    // meets the dead origin before the probe notices is retried.
    let gone: Vec<usize> = by_video
        .iter()
        .filter(|(_, o)| o.contains("origin0"))
        .map(|(v, _)| *v)
        .collect();
    drop(t.origins.servers[0].take());
    let start = Instant::now();
    let mut asked = 0;
    while start.elapsed() < Duration::from_secs(8) {
        for &v in &gone {
            for k in 1..=5 {
                let path = format!("/i/v{v}.mp4/segment{k}_0_av.ts");
                let cached = t.varnish.get(&path);
                assert_eq!(cached.status, 200, "{path} (cached)");
                let path = format!("/cmaf/v{v}.mp4/seg{k}_0_v.m4s");
                let reply = t.varnish.get(&path);
                assert_eq!(reply.status, 200, "{path} after {:?}", start.elapsed());
                asked += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(asked > 0);
    let health = t.varnish.health();
    assert_eq!(
        health.get("origin0").map(String::as_str),
        Some("sick"),
        "{health:?}"
    );
    assert_eq!(
        health.get("origin1").map(String::as_str),
        Some("healthy"),
        "{health:?}"
    );
    // Now new objects of those videos go straight to origin 1.
    let v = gone[0];
    let reply = t.varnish.get(&format!("/cmaf/v{v}.mp4/seg1_0_a.m4s"));
    assert_eq!((reply.status, origin_of(&reply).as_str()), (200, "origin1"));
}

#[test]
#[cfg_attr(
    any(casterpak_no_varnish, casterpak_no_browser, casterpak_no_ffmpeg),
    ignore = "needs varnishd (Debian's varnish); needs chromium, node and tests/browser/node_modules (npm ci); needs ffmpeg"
)]
fn hls_js_plays_through_the_varnish_tier() {
    let media = two_renditions();
    let t = tier_over(tempfile::tempdir().unwrap(), media.path());
    let url = format!(
        "http://{}/i/film_,hi,lo,.mp4.csmil/master.m3u8",
        t.varnish.addr
    );
    let result = play("hls", &url, &[]);
    assert!(result["currentTime"].as_f64().unwrap() >= 3.0, "{result}");
    assert_eq!(result["fatal"], serde_json::Value::Null);
    assert_eq!(result["levels"], 2, "{result}");
    // What it played came through the cache: asked again, it is a hit.
    let master = t.varnish.get("/i/film_,hi,lo,.mp4.csmil/master.m3u8");
    assert!(is_hit(&master), "{:?}", master.headers);
}

/// nginx with the shipped shield config (its cache path and port changed
/// for the test), in front of `origins`.
struct ShieldNginx {
    child: Child,
    addr: String,
}

impl ShieldNginx {
    fn start(dir: &Path, origins: &[&str]) -> ShieldNginx {
        let conf_dir = dir.join("nginx");
        fs::create_dir_all(&conf_dir).unwrap();
        let port = free_port();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/nginx/casterpak.conf");
        let shield = fs::read_to_string(shipped)
            .unwrap()
            .replace(
                "/var/cache/nginx/casterpak",
                &conf_dir.join("cache").display().to_string(),
            )
            .replace("    listen [::]:80;\n", "")
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        fs::write(conf_dir.join("casterpak.conf"), shield).unwrap();
        let servers: String = origins
            .iter()
            .map(|o| format!("server {o} max_fails=2 fail_timeout=10s;\n"))
            .collect();
        fs::write(conf_dir.join("casterpak-origins.conf"), servers).unwrap();
        let d = conf_dir.display();
        fs::write(
            conf_dir.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n\
                 client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n    include casterpak.conf;\n}}\n"
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(&conf_dir)
            .arg("-c")
            .arg(conf_dir.join("nginx.conf"))
            .arg("-e")
            .arg(conf_dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian's nginx)");
        let nginx = ShieldNginx {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while !conf_dir.join("nginx.pid").exists()
            || std::net::TcpStream::connect(&nginx.addr).is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nginx did not start: {}",
                fs::read_to_string(conf_dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn get(&self, path: &str) -> Reply {
        request(&self.addr, "GET", path, &[])
    }
}

impl Drop for ShieldNginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[cfg_attr(casterpak_no_stores, ignore = "needs nginx (Debian's nginx)")]
fn the_nginx_shield_caches_once_keeps_videos_together_and_survives_an_origin() {
    let (dir, root) = videos(16);
    let mut origins = Origins::start(dir.path(), &root);
    let nginx = ShieldNginx::start(dir.path(), &origins.addrs());
    // A miss, then hits: the origins saw one request; ranges from the cache.
    let segment = "/i/v0.mp4/segment2_0_av.ts";
    let first = nginx.get(segment);
    assert_eq!((first.status, first.header("X-Cache")), (200, Some("MISS")));
    let again = request(
        &nginx.addr,
        "GET",
        &format!("{segment}?token=1"),
        &[("Cookie", "a=b")],
    );
    assert_eq!((again.status, again.header("X-Cache")), (200, Some("HIT")));
    assert_eq!(again.body, first.body);
    let part = request(&nginx.addr, "GET", segment, &[("Range", "bytes=100-299")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &first.body[100..300]);
    // A master's filters make other masters, kept apart.
    let master = "/i/v0.mp4/master.m3u8";
    for _ in 0..2 {
        assert!(nginx.get(master).text().contains("index_0_av.m3u8"));
    }
    assert_eq!(nginx.get(&format!("{master}?b=0-1")).status, 404);
    assert_eq!(nginx.get(&format!("{master}?b-in-range=0-1")).status, 404);
    for (query, uri) in [
        ("audio-only", "index_0_a.m3u8"),
        ("video-only=1", "index_0_v.m3u8"),
    ] {
        let switched = nginx.get(&format!("{master}?{query}")).text();
        assert!(
            switched.contains(uri) && !switched.contains("_av."),
            "{query}: {switched}"
        );
    }
    eventually("the miss logged", || {
        origins.requests(segment).iter().sum::<usize>() == 1
    });
    // Each video's objects from one origin; both origins used.
    let mut by_video: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for v in 0..16 {
        let base = format!("/i/v{v}.mp4");
        let mut paths = vec![format!("{base}/index_0_av.m3u8")];
        paths.extend((1..=5).map(|k| format!("{base}/segment{k}_0_av.ts")));
        for path in &paths {
            assert_eq!(nginx.get(path).status, 200, "{path}");
            eventually(path, || origins.requests(path).iter().sum::<usize>() == 1);
            for (n, count) in origins.requests(path).into_iter().enumerate() {
                if count > 0 {
                    by_video.entry(v).or_default().insert(n);
                }
            }
        }
    }
    assert!(by_video.values().all(|o| o.len() == 1), "{by_video:?}");
    let used: BTreeSet<usize> = by_video.values().flatten().copied().collect();
    assert_eq!(used.len(), 2, "both origins take videos: {by_video:?}");
    // Origin 0 goes: its videos' new objects come from origin 1, and no
    // request fails (the one that meets it is passed on).
    drop(origins.servers[0].take());
    for (v, _) in by_video.iter().filter(|(_, o)| o.contains(&0)) {
        for k in 1..=5 {
            let path = format!("/cmaf/v{v}.mp4/seg{k}_0_v.m4s");
            let reply = nginx.get(&path);
            assert_eq!(reply.status, 200, "{path}");
            eventually(&format!("{path} from origin 1"), || {
                origins.requests(&path) == [0, 1]
            });
        }
    }
}

/// The shipped VCL compiles with each origins file shipped beside it: the
/// example in dist/varnish/, and that of dist/compose/ (the compose setup
/// itself needs Docker, which the tests do not run).
#[test]
#[cfg_attr(casterpak_no_varnish, ignore = "needs varnishd (Debian's varnish)")]
fn the_shipped_vcl_compiles_with_each_shipped_origins_file() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    for origins in ["varnish", "compose"] {
        let work = tempfile::tempdir().unwrap();
        let out = Command::new("varnishd")
            .arg("-C")
            .arg("-f")
            .arg(dist.join("varnish/casterpak.vcl"))
            .arg("-p")
            .arg(format!("vcl_path={}", dist.join(origins).display()))
            .arg("-n")
            .arg(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "with dist/{origins}/casterpak-origins.vcl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[cfg_attr(
    any(casterpak_no_varnish, casterpak_no_ffmpeg),
    ignore = "needs varnishd (Debian's varnish); needs ffmpeg"
)]
fn varnish_keeps_a_playlist_per_country_and_segments_for_all() {
    let (dir, root) = videos(1);
    crate::preroll::make_ad(&root.join("ads/us.mp4"), "red");
    crate::preroll::make_ad(&root.join("ads/gb.mp4"), "blue");
    let origins = Origins::start_with(dir.path(), &root, &crate::preroll::PREROLL_ENV);
    let v = Varnish::start(dir.path(), &origins.addrs());
    let playlist = "/i/v0.mp4/index_0_av.m3u8";
    let for_country = |country: &str| v.get_with(playlist, &[("X-Country", country)]);
    let gb = for_country("gb");
    assert!(
        !is_hit(&gb) && gb.text().contains("/i/ads/gb.mp4/"),
        "{}",
        gb.text()
    );
    assert!(is_hit(&for_country("GB")));
    let fr = for_country("fr");
    assert!(
        !is_hit(&fr) && fr.text().contains("/i/ads/us.mp4/"),
        "{}",
        fr.text()
    );
    assert!(is_hit(&for_country("fr")));
    assert_eq!(for_country("gb").body, gb.body);
    let off = v.get_with(&format!("{playlist}?preroll=0"), &[("X-Country", "gb")]);
    assert!(
        !is_hit(&off) && !off.text().contains("/ads/"),
        "{}",
        off.text()
    );
    eventually("three playlists made", || {
        origins.requests(playlist).iter().sum::<usize>() == 3
    });

    // Segments, the content's and a pre-roll's, and the master: one for
    // every country.
    for path in [
        "/i/v0.mp4/segment1_0_av.ts",
        "/i/ads/gb.mp4/segment1_0_av.ts",
        "/i/v0.mp4/master.m3u8",
    ] {
        let first = v.get_with(path, &[("X-Country", "gb")]);
        assert_eq!(first.status, 200, "{path}");
        let other = v.get_with(path, &[("X-Country", "fr")]);
        assert!(is_hit(&other), "{path}");
        assert!(first.body == other.body, "{path}");
        eventually(path, || origins.requests(path).iter().sum::<usize>() == 1);
    }
}
