//! Good files made hostile, every way at once: each box's size set to 0,
//! 1, 2^32-1 and 2^64-1, each sample table's entry count set huge,
//! truncations, and bit flips in the moov. One server answers them all
//! while a good client plays a good file alongside; every answer must be
//! 200 (it packaged) or the clear refusal, 404 or 422, never a 5xx, a hang
//! or a dead server, and memory stays bounded. Prints the figures (the
//! worst request's CPU time, the peak RSS); `bench/hostile.sh` runs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::http_client::{request, Server};
use crate::support::{fixture, report};

/// The server's peak RSS over the whole run (its baseline is about 25 MB;
/// one request may take 64 MB besides a file's index, and these indexes
/// are under a megabyte).
const MAX_PEAK_RSS_MB: u64 = 128;

const SOURCES: [&str; 2] = ["h264-aac-bframes.mp4", "h264-aac-fragmented.mp4"];

/// Boxes whose children are boxes (ISO/IEC 14496-12), to walk into.
const CONTAINERS: [&[u8; 4]; 11] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf",
    b"udta",
];

/// Sample tables and the offset of their entry count from the box start.
const COUNTS: [(&[u8; 4], usize); 8] = [
    (b"stsz", 16),
    (b"stts", 12),
    (b"ctts", 12),
    (b"stss", 12),
    (b"stsc", 12),
    (b"stco", 12),
    (b"co64", 12),
    (b"trun", 12),
];

struct Found {
    fourcc: [u8; 4],
    start: usize,
    end: usize,
}

/// Every box of `data` within `range`, depth first.
fn boxes(data: &[u8], range: std::ops::Range<usize>, out: &mut Vec<Found>) {
    let mut pos = range.start;
    while pos + 8 <= range.end {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let fourcc: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
        if size < 8 || pos + size > range.end {
            break;
        }
        out.push(Found {
            fourcc,
            start: pos,
            end: pos + size,
        });
        if CONTAINERS.contains(&&fourcc) {
            boxes(data, pos + 8..pos + size, out);
        }
        pos += size;
    }
}

/// The hostile variants of `data`, named.
fn variants(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    boxes(data, 0..data.len(), &mut found);
    let mut out = Vec::new();
    for (n, b) in found.iter().enumerate() {
        let name = String::from_utf8_lossy(&b.fourcc).into_owned();
        for (what, size) in [("0", 0u32), ("1", 1), ("4294967295", u32::MAX)] {
            let mut v = data.to_vec();
            v[b.start..b.start + 4].copy_from_slice(&size.to_be_bytes());
            out.push((format!("box{n}-{name}-size-{what}"), v));
        }
        if b.end - b.start >= 16 {
            let mut v = data.to_vec();
            v[b.start..b.start + 4].copy_from_slice(&1u32.to_be_bytes());
            v[b.start + 8..b.start + 16].copy_from_slice(&u64::MAX.to_be_bytes());
            out.push((format!("box{n}-{name}-size-2^64-1"), v));
        }
        if let Some((_, at)) = COUNTS.iter().find(|(f, _)| **f == b.fourcc) {
            for count in [u32::MAX, 1 << 31, 1 << 24] {
                if b.start + at + 4 <= b.end {
                    let mut v = data.to_vec();
                    v[b.start + at..b.start + at + 4].copy_from_slice(&count.to_be_bytes());
                    out.push((format!("box{n}-{name}-count-{count}"), v));
                }
            }
        }
    }
    let moov = found.iter().find(|b| &b.fourcc == b"moov").expect("a moov");
    for cut in [
        1,
        8,
        16,
        moov.start + 8,
        (moov.start + moov.end) / 2,
        moov.end - 1,
    ] {
        out.push((format!("truncated-at-{cut}"), data[..cut].to_vec()));
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for n in 0..40 {
        let mut v = data.to_vec();
        for _ in 0..8 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = moov.start + 8 + (rng as usize) % (moov.end - moov.start - 8);
            v[at] ^= 1 << (rng >> 60 & 7);
        }
        out.push((format!("flipped-{n}"), v));
    }
    out
}

#[test]
fn hostile_variants_of_good_files_are_refused_cleanly_while_good_ones_play() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(fixture("h264-aac-moov-end.mp4"), root.join("good.mp4")).unwrap();
    let mut names = Vec::new();
    for source in SOURCES {
        let data = std::fs::read(fixture(source)).unwrap();
        for (name, bytes) in variants(&data) {
            let name = format!("{}-{name}.mp4", &source[..source.len() - 4]);
            let path = root.join(&name);
            std::fs::write(&path, bytes).unwrap();
            // Broken for good, not being written (that would be a 503).
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(SystemTime::now() - Duration::from_secs(3600))
                .unwrap();
            names.push(name);
        }
    }
    // Failures are not remembered, so that every request does the work.
    let mut server = Server::start_with_env(
        &root,
        &dir.path().join("cache"),
        &[],
        &[("CASTERPAK_MEDIA_FAILURE_TTL", "0")],
    );
    let good = "/i/good.mp4/segment1_0_av.ts";
    let expected = server.get(good).body;
    let targets: Vec<String> = names
        .iter()
        .flat_map(|name| {
            [
                "/i/{}/master.m3u8",
                "/i/{}/segment1_0_av.ts",
                // The same index through the CMAF writer.
                "/cmaf/{}/manifest.mpd",
                "/cmaf/{}/init_0_v.mp4",
                "/cmaf/{}/seg1_0_v.m4s",
                "/cmaf/{}/seg1_0_a.m4s",
            ]
            .map(|target| target.replace("{}", name))
        })
        .collect();
    // Alone first, to measure each request's CPU time ...
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut worst = (0u64, String::new());
    for target in &targets {
        let before = cpu_ms(server.pid());
        let reply = request(&server.addr, "GET", target, &[]);
        let spent = cpu_ms(server.pid()).saturating_sub(before);
        if spent > worst.0 {
            worst = (spent, target.clone());
        }
        assert!(
            matches!(reply.status, 200 | 404 | 422),
            "{target}: {} {}",
            reply.status,
            reply.text()
        );
        *statuses.entry(reply.status).or_default() += 1;
    }
    // ... then again while a good client plays a good file.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // The player stops however this scope ends: a failed assertion
        // below must not leave it playing forever.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        let player = scope.spawn(|| {
            let mut plays = 0;
            while !stop.load(Ordering::Relaxed) {
                let reply = server.get(good);
                assert_eq!((reply.status, &reply.body), (200, &expected), "good file");
                plays += 1;
            }
            plays
        });
        for target in &targets {
            let reply = request(&server.addr, "GET", target, &[]);
            assert!(matches!(reply.status, 200 | 404 | 422), "{target}");
        }
        stop.store(true, Ordering::Relaxed);
        assert!(player.join().unwrap() > 0);
    });
    assert!(server.is_running());
    assert_eq!(server.get(good).body, expected, "and after");
    let peak_mb = peak_rss_kb(server.pid()) / 1024;
    report(&format!(
        "hostile variants: {} files, answers {statuses:?}; worst request {} ms of CPU ({}); \
         serve's peak RSS {peak_mb} MB",
        names.len(),
        worst.0,
        worst.1
    ));
    assert!(statuses.get(&422).is_some_and(|&n| n > names.len() / 2));
    assert!(peak_mb <= MAX_PEAK_RSS_MB, "peak RSS {peak_mb} MB");
}

/// CPU time (user and system) the process has used, in milliseconds.
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1000 / per_second
}

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_generator_makes_every_kind_of_variant() {
    let data = std::fs::read(fixture(SOURCES[0])).unwrap();
    let names: Vec<String> = variants(&data).into_iter().map(|(n, _)| n).collect();
    for kind in [
        "-moov-size-0",
        "-stsz-size-2^64-1",
        "-stts-count-4294967295",
        "-stco-count-",
        "truncated-at-",
        "flipped-",
    ] {
        assert!(names.iter().any(|n| n.contains(kind)), "no {kind} variant");
    }
    assert!(Path::new(&fixture(SOURCES[1])).exists());
}
