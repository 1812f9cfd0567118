//! What operators watch an origin with: the health endpoint a load
//! balancer or a shield cache probes.

use std::fs;
use std::path::Path;

use crate::http_client::{request, Server};
use crate::support::{fixture, SmallDisk};

fn media(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("media");
    fs::create_dir_all(&root).unwrap();
    fs::copy(fixture("h264-aac-bframes.mp4"), root.join("film.mp4")).unwrap();
    root
}

#[test]
fn healthz_answers_ok_off_the_media_urls_and_is_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&media(dir.path()), &dir.path().join("cache"), &[]);
    let reply = s.get("/healthz");
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok\n"));
    assert_eq!(reply.header("Cache-Control"), Some("no-store"));
    let head = request(&s.addr, "HEAD", "/healthz", &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    // The media URLs are what they were.
    assert_eq!(s.get("/i/film.mp4/master.m3u8").status, 200);
    assert_eq!(s.get("/i/healthz").status, 404);
}

#[test]
#[cfg_attr(casterpak_not_root, ignore = "needs root (mounts a small tmpfs)")]
fn healthz_fails_while_the_cache_disk_is_full_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let _disk = SmallDisk::mount(&cache, "1m");
    let s = Server::start(&media(dir.path()), &cache, &[]);
    assert_eq!(s.get("/healthz").status, 200);
    // Fill what is left of the disk.
    let filler = cache.join("filler");
    let mut chunk = vec![7u8; 64 << 10];
    let mut file = fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    chunk.truncate(1);
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    let full = s.get("/healthz");
    assert_eq!(full.status, 503, "{}", full.text());
    assert!(
        full.text().starts_with("cache unusable: "),
        "{}",
        full.text()
    );
    assert_eq!(full.header("Cache-Control"), Some("no-store"));
    // Media is still answered (from memory) while the probe says not ready.
    assert_eq!(s.get("/i/film.mp4/segment1_0_av.ts").status, 200);
    fs::remove_file(&filler).unwrap();
    assert_eq!(s.get("/healthz").status, 200);
}

/// `/metrics`, parsed as Prometheus text: the sample of `name` whose
/// labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

fn scrape(s: &Server) -> prometheus_parse::Scrape {
    let reply = s.get("/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();
    // Every line a comment or a sample the format allows.
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP casterpak_")
                || line.starts_with("# TYPE casterpak_")
                || line.starts_with("casterpak_"),
            "{line}"
        );
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        &media(dir.path()),
        &dir.path().join("cache"),
        &[],
        &[("CASTERPAK_SERVER_PREFETCH", "0")],
    );
    let before = scrape(&s);
    let requests = |scrape: &prometheus_parse::Scrape, route: &str, status: &str| {
        sample(
            scrape,
            "casterpak_requests_total",
            &[("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    let segment = s.get("/i/film.mp4/segment1_0_av.ts");
    assert_eq!(segment.status, 200);
    assert_eq!(
        s.get("/i/film.mp4/segment1_0_av.ts").header("X-Cache"),
        Some("HIT")
    );
    assert_eq!(s.get("/i/missing.mp4/master.m3u8").status, 404);
    let after = scrape(&s);
    assert_eq!(
        requests(&after, "segment", "200") - requests(&before, "segment", "200"),
        2.0
    );
    assert_eq!(
        requests(&after, "master", "404") - requests(&before, "master", "404"),
        1.0
    );
    assert!(requests(&after, "metrics", "200") >= 1.0);
    let outcome = |scrape: &prometheus_parse::Scrape, o: &str| {
        sample(scrape, "casterpak_cache_requests_total", &[("outcome", o)]).unwrap()
    };
    assert_eq!(outcome(&after, "hit") - outcome(&before, "hit"), 1.0);
    assert_eq!(outcome(&after, "miss") - outcome(&before, "miss"), 1.0);
    let made = |scrape: &prometheus_parse::Scrape| {
        sample(scrape, "casterpak_packaging_seconds", &[]).unwrap()
    };
    assert_eq!(made(&after) - made(&before), 1.0, "one object made");
    let sent = |scrape: &prometheus_parse::Scrape| {
        sample(scrape, "casterpak_sent_bytes_total", &[]).unwrap()
    };
    assert!(
        sent(&after) - sent(&before) >= 2.0 * segment.body.len() as f64,
        "both segments counted"
    );
    let objects = sample(&after, "casterpak_cache_objects", &[("kind", "segment")]);
    assert_eq!(objects, Some(1.0));
    let bytes = sample(&after, "casterpak_cache_bytes", &[("kind", "segment")]);
    assert_eq!(bytes, Some(segment.body.len() as f64));
    assert!(sample(&after, "casterpak_connections_open", &[]).unwrap() >= 1.0);
    for family in [
        "casterpak_gc_runs_total",
        "casterpak_gc_deleted_bytes_total",
        "casterpak_remote_errors_total",
        "casterpak_connections_closed_for_room_total",
        "casterpak_accept_failures_total",
    ] {
        assert_eq!(sample(&after, family, &[]), Some(0.0), "{family}");
    }
}

#[test]
fn gc_runs_of_the_server_show_in_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        &media(dir.path()),
        &dir.path().join("cache"),
        &[],
        &[
            ("CASTERPAK_SERVER_PREFETCH", "0"),
            ("CASTERPAK_CACHE_GC_INTERVAL", "1"),
            ("CASTERPAK_CACHE_OUTPUT_TTL", "1"),
        ],
    );
    let segment = s.get("/i/film.mp4/segment1_0_av.ts");
    assert_eq!(segment.status, 200);
    let start = std::time::Instant::now();
    loop {
        let now = scrape(&s);
        let freed = sample(&now, "casterpak_gc_deleted_bytes_total", &[]).unwrap();
        if freed >= segment.body.len() as f64 {
            assert!(sample(&now, "casterpak_gc_runs_total", &[]).unwrap() >= 1.0);
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "gc never freed the segment"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The shipped systemd units: valid for systemd (pointed at this build's
/// binary), and hardened: `systemd-analyze security` rates each exposure
/// 2.0 or less of 10 (8.6 for a unit with no hardening).
#[test]
#[cfg_attr(casterpak_no_systemd_analyze, ignore = "needs systemd-analyze")]
fn the_systemd_units_verify_and_are_hardened() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/systemd");
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in [
        "casterpak.service",
        "casterpak-gc.service",
        "casterpak-gc.timer",
    ] {
        let text = fs::read_to_string(shipped.join(name)).unwrap();
        let unit = dir.path().join(name);
        fs::write(
            &unit,
            text.replace("/usr/local/bin/casterpak", env!("CARGO_BIN_EXE_casterpak")),
        )
        .unwrap();
        units.push(unit);
    }
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    for unit in &units[..2] {
        let security = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&security.stdout);
        let exposure: f64 = report
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level: {report}"));
        assert!(exposure <= 2.0, "{}: exposure {exposure}", unit.display());
    }
}

/// Every log line of a request names it, by the client's `X-Request-Id`
/// or one of ours, and the answer carries it; with `log.format = "json"`
/// each line is an object.
#[test]
fn each_request_has_an_id_in_its_answer_and_its_log_lines_text_or_json() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let env = [
            ("RUST_LOG", "casterpak=debug,access=info"),
            ("CASTERPAK_LOG_FORMAT", format),
            ("CASTERPAK_SERVER_PREFETCH", "0"),
        ];
        let s = Server::start_logging(&media(dir.path()), &dir.path().join("cache"), &env, &log);
        let theirs = request(
            &s.addr,
            "GET",
            "/i/film.mp4/segment1_0_av.ts",
            &[("X-Request-Id", "lb-7f3a.1")],
        );
        assert_eq!(theirs.header("X-Request-Id"), Some("lb-7f3a.1"));
        let ours = request(
            &s.addr,
            "GET",
            "/i/film.mp4/segment2_0_av.ts",
            &[("X-Request-Id", "not an id; with spaces")],
        );
        let id = ours.header("X-Request-Id").unwrap().to_string();
        assert!(id.len() >= 8 && !id.contains(' '), "{id}");
        assert_ne!(s.get("/healthz").header("X-Request-Id"), Some(id.as_str()));
        drop(s);
        let text = fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("casterpak serving"))
            .collect();
        if format == "json" {
            for line in &lines {
                let _: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            }
        }
        for (request_id, path) in [
            ("lb-7f3a.1", "segment1_0_av.ts"),
            (id.as_str(), "segment2_0_av.ts"),
        ] {
            let mine: Vec<&&str> = lines.iter().filter(|l| l.contains(request_id)).collect();
            // The segment made (debug) and the access line, at least.
            assert!(mine.len() >= 2, "{format}: {mine:?}\n{text}");
            assert!(
                mine.iter().any(|l| l.contains(path) && l.contains(" 200 ")),
                "{format}: {mine:?}"
            );
            assert!(
                mine.iter().any(|l| l.contains("made")),
                "{format}: {mine:?}"
            );
            if format == "json" {
                for line in &mine {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    assert_eq!(v["span"]["id"], request_id, "{line}");
                }
            }
        }
    }
}

/// `server.admin_listen`: health and metrics on their own address, and
/// only there; the media only on the main one.
#[test]
fn admin_listen_moves_health_and_metrics_off_the_media_address() {
    let dir = tempfile::tempdir().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap().to_string();
    drop(admin);
    let s = Server::start_with_env(
        &media(dir.path()),
        &dir.path().join("cache"),
        &[],
        &[("CASTERPAK_SERVER_ADMIN_LISTEN", &admin_addr)],
    );
    assert_eq!(s.get("/healthz").status, 404);
    assert_eq!(s.get("/metrics").status, 404);
    assert_eq!(s.get("/i/film.mp4/master.m3u8").status, 200);
    let health = request(&admin_addr, "GET", "/healthz", &[]);
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let metrics = request(&admin_addr, "GET", "/metrics", &[]);
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .text()
        .contains("casterpak_requests_total{route=\"master\",status=\"200\"} 1"));
    assert_eq!(
        request(&admin_addr, "GET", "/i/film.mp4/master.m3u8", &[]).status,
        404
    );
}

/// SIGHUP: the configuration is read again; what a running server can take
/// (Cache-Control ages, CORS, waits, prefetch) applies to the next
/// requests, the rest is named as needing a restart and left as it was; a
/// file that does not load changes nothing.
#[test]
fn sighup_rereads_the_configuration_where_it_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    let root = media(dir.path());
    let file = dir.path().join("casterpak.toml");
    fs::write(&file, "[server]\nmax_age = 100\n").unwrap();
    let log = dir.path().join("serve.log");
    let s = Server::start_logging_with(
        &root,
        &dir.path().join("cache"),
        &["--config", file.to_str().unwrap()],
        &[("RUST_LOG", "casterpak=info")],
        &log,
    );
    let playlist = "/i/film.mp4/index_0_av.m3u8";
    let before = s.get(playlist);
    assert_eq!(before.header("Cache-Control"), Some("public, max-age=100"));
    let hangup = |expect: &str| {
        let count = fs::read_to_string(&log).unwrap().matches(expect).count();
        // SAFETY: kill takes a pid and a signal number.
        unsafe {
            libc::kill(s.pid() as libc::pid_t, libc::SIGHUP);
        }
        let start = std::time::Instant::now();
        while fs::read_to_string(&log).unwrap().matches(expect).count() == count {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "no {expect:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    fs::write(
        &file,
        "[server]\nmax_age = 200\nworkers = 4\ncors_origin = \"https://p.example\"\n\
         [media]\nsegment_duration = 2\n",
    )
    .unwrap();
    hangup("SIGHUP: configuration re-read");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(
            "changed now: server.cors_origin, server.max_age; changed, need a restart: \
             media.segment_duration, server.workers"
        ),
        "{logged}"
    );
    let after = s.get(playlist);
    assert_eq!(after.header("Cache-Control"), Some("public, max-age=200"));
    assert_eq!(
        after.header("Access-Control-Allow-Origin"),
        Some("https://p.example")
    );
    assert_eq!(after.body, before.body, "segments as they were: 6 s");
    // A file that does not load: logged, nothing changes, still serving.
    fs::write(&file, "[server]\nmax_age = \"soon\"\n").unwrap();
    hangup("SIGHUP: the configuration does not load");
    let still = s.get(playlist);
    assert_eq!(still.header("Cache-Control"), Some("public, max-age=200"));
}
