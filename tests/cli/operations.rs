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
