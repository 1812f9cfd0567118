//! Files built to make the packager do unbounded work, and what it must do
//! with them: fail cleanly, or package, within bounded memory. Memory is
//! the child process's peak RSS (GNU time for `package`, `VmHWM` for a
//! running `serve`), never a time.

use std::ffi::OsStr;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::http_client::request;
use crate::support::report;

const MIB: u64 = 1 << 20;

/// What one request may take besides its file's index (16 to 24 bytes a
/// sample).
const REQUEST_MEMORY: u64 = 64 * MIB;

fn boxed(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
    [&(8 + body.len() as u32).to_be_bytes()[..], fourcc, body].concat()
}

fn full(fourcc: &[u8; 4], flags: u32, body: &[u8]) -> Vec<u8> {
    boxed(fourcc, &[&flags.to_be_bytes()[..], body].concat())
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// The identity matrix of mvhd and tkhd (ISO/IEC 14496-12 8.2.2).
fn matrix() -> Vec<u8> {
    u32s(&[0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000])
}

fn mvhd() -> Vec<u8> {
    let mut body = u32s(&[0, 0, 1000, 0, 0x10000]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&[0; 10]);
    body.extend(matrix());
    body.extend_from_slice(&[0; 24]);
    body.extend(u32s(&[u32::MAX]));
    full(b"mvhd", 0, &body)
}

/// A track of `count` samples of `size` bytes, `delta` ticks apart, all
/// in one chunk at `chunk_offset`.
struct TrackSpec {
    handler: &'static [u8; 4],
    timescale: u32,
    sample_entry: Vec<u8>,
    count: u32,
    size: u32,
    delta: u32,
}

fn trak(id: u32, t: &TrackSpec, chunk_offset: u32) -> Vec<u8> {
    let mut tkhd = u32s(&[0, 0, id, 0, 0, 0, 0, 0, 0]);
    tkhd.extend(matrix());
    tkhd.extend(u32s(&[16 << 16, 16 << 16]));
    let mdhd = full(
        b"mdhd",
        0,
        &[&u32s(&[0, 0, t.timescale, 0])[..], &[0x55, 0xc4, 0, 0]].concat(),
    );
    let hdlr = full(b"hdlr", 0, &[&[0; 4][..], t.handler, &[0; 13]].concat());
    let stbl = [
        full(b"stsd", 0, &[&u32s(&[1])[..], &t.sample_entry].concat()),
        full(b"stts", 0, &u32s(&[1, t.count, t.delta])),
        full(b"stsc", 0, &u32s(&[1, 1, t.count, 1])),
        full(b"stsz", 0, &u32s(&[t.size, t.count])),
        full(b"stco", 0, &u32s(&[1, chunk_offset])),
    ]
    .concat();
    let minf = boxed(b"minf", &boxed(b"stbl", &stbl));
    let mdia = boxed(b"mdia", &[mdhd, hdlr, minf].concat());
    boxed(b"trak", &[full(b"tkhd", 3, &tkhd), mdia].concat())
}

/// ftyp, a moov of `tracks` whose samples all point at the start of an
/// mdat of `mdat_len` zero bytes, and that mdat.
fn mp4(tracks: &[TrackSpec], mdat_len: usize) -> Vec<u8> {
    let ftyp = boxed(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41");
    let moov = |offset: u32| {
        let traks: Vec<u8> = (1..)
            .zip(tracks)
            .flat_map(|(id, t)| trak(id, t, offset))
            .collect();
        boxed(b"moov", &[mvhd(), traks].concat())
    };
    let offset = (ftyp.len() + moov(0).len() + 8) as u32;
    let mut data = [ftyp, moov(offset)].concat();
    data.extend_from_slice(&(8 + mdat_len as u32).to_be_bytes());
    data.extend_from_slice(b"mdat");
    data.resize(data.len() + mdat_len, 0);
    data
}

/// An H.264 sample entry (avc1 with a small avcC, 4-byte NAL lengths).
fn avc1() -> Vec<u8> {
    let avcc = [
        &[1, 0x42, 0xc0, 0x0a, 0xff, 0xe1, 0, 4][..],
        &[0x67, 0x42, 0xc0, 0x0a],
        &[1, 0, 2, 0x68, 0xce],
    ]
    .concat();
    let mut body = vec![0; 6];
    body.extend_from_slice(&[0, 1]);
    body.extend_from_slice(&[0; 16]);
    body.extend(u32s(&[(16 << 16) | 16, 0x48_0000, 0x48_0000, 0]));
    body.extend_from_slice(&[0, 1]);
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0, 24, 0xff, 0xff]);
    body.extend(boxed(b"avcC", &avcc));
    boxed(b"avc1", &body)
}

/// An AC-3 sample entry: 48 kHz stereo.
fn ac3() -> Vec<u8> {
    let mut body = vec![0; 6];
    body.extend_from_slice(&[0, 1]);
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&[0, 2, 0, 16, 0, 0, 0, 0]);
    body.extend(u32s(&[48_000 << 16]));
    body.extend(boxed(b"dac3", &[0x10, 0x3d, 0xe0]));
    boxed(b"ac-3", &body)
}

/// `traks` video tracks, each of `count` one-byte samples over the same
/// bytes of an mdat of 4 MiB.
fn one_byte_video_tracks(traks: usize, count: u32) -> Vec<u8> {
    let tracks: Vec<TrackSpec> = (0..traks)
        .map(|_| TrackSpec {
            handler: b"vide",
            timescale: 30,
            sample_entry: avc1(),
            count,
            size: 1,
            delta: 1,
        })
        .collect();
    mp4(&tracks, 4 << 20)
}

struct Run {
    success: bool,
    stderr: String,
    /// Peak resident set in bytes.
    max_rss: u64,
}

impl Run {
    fn assert_peak_under(&self, limit: u64) {
        assert!(self.max_rss < limit, "peak RSS {} MiB", self.max_rss / MIB);
    }
}

/// Runs casterpak under GNU time, which reports the peak RSS of the child
/// it forks. Measuring our own child (wait4, RUSAGE_CHILDREN) would count
/// the test process's memory, which the child shares until it execs and
/// which Linux keeps in the child's maxrss.
fn run_measured(args: &[&OsStr]) -> Run {
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%M %U %S", "-o"])
        .arg(rss_file.path())
        .arg(env!("CARGO_BIN_EXE_casterpak"))
        .args(args)
        .stdout(Stdio::null())
        .output()
        .expect("GNU time runs casterpak");
    let text = std::fs::read_to_string(rss_file.path()).unwrap();
    // %M is in kilobytes, %U and %S in seconds; a failing child adds a
    // line before them.
    let fields: Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
    let kib: u64 = fields[0].parse().unwrap();
    let cpu: f64 = fields[1..].iter().map(|f| f.parse::<f64>().unwrap()).sum();
    let file = args
        .get(1)
        .map(|a| {
            Path::new(a)
                .file_name()
                .unwrap_or(a)
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    report(&format!(
        "hostile file {file}: peak RSS {} MB, {cpu:.2} s of CPU",
        kib / 1024
    ));
    Run {
        success: output.status.success(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        max_rss: kib * 1024,
    }
}

fn package_measured(source: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![OsStr::new("package"), source.as_os_str()];
    args.extend([OsStr::new("--out"), out.as_os_str()]);
    args.extend(extra.iter().map(OsStr::new));
    run_measured(&args)
}

/// 4.2 MB of file, 40 traks each declaring 2^22 one-byte samples: every
/// track was expanded before any was chosen, with a cap per track, and
/// `package` took 3.9 GB. The chosen track's declared samples are over the
/// file's budget now, which is an error before anything is expanded.
#[test]
#[cfg_attr(
    casterpak_no_gnu_time,
    ignore = "needs GNU time (/usr/bin/time; Debian: time)"
)]
fn forty_traks_of_four_million_samples_fail_cleanly_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("forty-traks.mp4");
    std::fs::write(&source, one_byte_video_tracks(40, 1 << 22)).unwrap();
    let run = package_measured(&source, &tmp.path().join("out"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("more than the"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run.assert_peak_under(REQUEST_MEMORY);
}

/// Within the budget, only the one track packaged is expanded: 2^20
/// samples (16 MiB of index, 24 at most) rather than 40 times that.
#[test]
#[cfg_attr(
    casterpak_no_gnu_time,
    ignore = "needs GNU time (/usr/bin/time; Debian: time)"
)]
fn of_forty_traks_only_the_packaged_one_is_expanded() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("forty-traks.mp4");
    std::fs::write(&source, one_byte_video_tracks(40, 1 << 20)).unwrap();
    let run = package_measured(&source, &tmp.path().join("out"), &[]);
    // One-byte samples hold no NAL unit: the first segment fails, cleanly.
    assert!(!run.success);
    assert!(
        run.stderr.contains("inside a NAL unit length"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run.assert_peak_under(REQUEST_MEMORY + (24 << 20));
}

/// One 92 MB segment (3000 AC-3 frames of 30 kB, all presented within
/// 63 ms): it was read whole and built whole in memory (184 MB); it is
/// streamed into its file now.
fn one_huge_segment() -> Vec<u8> {
    audio_frames(3000, 30_000)
}

/// `count` AC-3 frames of `size` bytes, all presented within 63 ms.
fn audio_frames(count: u32, size: u32) -> Vec<u8> {
    let track = TrackSpec {
        handler: b"soun",
        timescale: 48_000,
        sample_entry: ac3(),
        count,
        size,
        delta: 1,
    };
    mp4(&[track], (count * size) as usize)
}

/// An audio frame over the largest real one (32 KiB) was read whole, here
/// 64 MB, before it was refused; it is refused unread now.
#[test]
#[cfg_attr(
    casterpak_no_gnu_time,
    ignore = "needs GNU time (/usr/bin/time; Debian: time)"
)]
fn oversized_audio_frames_are_refused_before_they_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("big-frames.mp4");
    std::fs::write(&source, audio_frames(1, 64 << 20)).unwrap();
    let run = package_measured(&source, &tmp.path().join("out"), &[]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("audio frame of 67108864 bytes"),
        "{}",
        run.stderr
    );
    // Over what the binary takes to fail on a missing file (a debug
    // build's own pages are about 16 MiB), far less than the frame.
    let floor = package_measured(&tmp.path().join("missing.mp4"), &tmp.path().join("o2"), &[]);
    assert!(!floor.success);
    run.assert_peak_under(floor.max_rss + 16 * MIB);
}

#[test]
#[cfg_attr(
    casterpak_no_gnu_time,
    ignore = "needs GNU time (/usr/bin/time; Debian: time)"
)]
fn a_ninety_megabyte_segment_is_made_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("huge-segment.mp4");
    std::fs::write(&source, one_huge_segment()).unwrap();
    let out = tmp.path().join("out");
    let run = package_measured(&source, &out, &[]);
    assert!(run.success, "{}", run.stderr);
    let segment = std::fs::metadata(out.join("segment1_0_a.ts"))
        .unwrap()
        .len();
    assert!(segment > 90_000_000, "{segment} bytes");
    run.assert_peak_under(REQUEST_MEMORY);
}

/// `casterpak serve` of `root` on a free port, and that port's address.
/// The child is ours, so that its /proc entry can be read.
fn spawn_serve(root: &Path, cache: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_casterpak"))
        .arg("serve")
        .arg("--root")
        .arg(root)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("casterpak serve starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, addr)
}

/// `serve` in a 3 GB memory cgroup was OOM-killed by one request for the
/// forty-trak file. One request for it, and one for a 92 MB segment, now
/// leave the server's peak RSS under the bound.
#[test]
fn serve_answers_hostile_requests_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("media");
    std::fs::create_dir(&root).unwrap();
    for (name, data) in [
        ("forty-traks.mp4", one_byte_video_tracks(40, 1 << 22)),
        ("huge-segment.mp4", one_huge_segment()),
    ] {
        let path = root.join(name);
        std::fs::write(&path, data).unwrap();
        // Not "still being written" (a recent file that fails is a 503).
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
    let (mut child, addr) = spawn_serve(&root, &tmp.path().join("cache"));
    let hostile = request(&addr, "GET", "/i/forty-traks.mp4/master.m3u8", &[]);
    let huge = request(&addr, "GET", "/i/huge-segment.mp4/segment1_0_a.ts", &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        hostile.status == 422,
        "{} {}",
        hostile.status,
        hostile.text()
    );
    assert_eq!(huge.status, 200);
    assert!(huge.body.len() > 90_000_000);
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    assert!(
        peak_kib * 1024 < REQUEST_MEMORY,
        "serve's peak RSS {} MiB",
        peak_kib / 1024
    );
}

/// A fragmented file whose one moof holds 18 000 truns of 2^20 samples for
/// a track the moov does not list (288 KB): walking them one sample at a
/// time took 44 s of CPU. They are measured with one multiplication each
/// (the unit test `stray_truns_are_measured_without_walking_their_samples`
/// counts the steps); the file, whose listed track has no sample, is then
/// refused at once.
#[test]
fn stray_truns_of_an_unlisted_track_are_skipped_and_the_file_refused_cleanly() {
    let track = TrackSpec {
        handler: b"vide",
        timescale: 30,
        sample_entry: avc1(),
        count: 0,
        size: 0,
        delta: 1,
    };
    let mut data = mp4(&[track], 100);
    let trex = full(b"trex", 0, &u32s(&[1, 1, 1, 10, 0]));
    let moov_at = data.windows(4).position(|w| w == b"moov").unwrap() - 4;
    let moov_len = u32::from_be_bytes(data[moov_at..moov_at + 4].try_into().unwrap()) as usize;
    let moov = [
        &data[moov_at + 8..moov_at + moov_len],
        &boxed(b"mvex", &trex),
    ]
    .concat();
    data.splice(moov_at..moov_at + moov_len, boxed(b"moov", &moov));
    // tfhd: track 99, default-base-is-moof, default sample size 1.
    let mut traf = full(b"tfhd", 0x02_0010, &u32s(&[99, 1]));
    let trun = full(b"trun", 0, &u32s(&[1 << 20]));
    for _ in 0..18_000 {
        traf.extend_from_slice(&trun);
    }
    data.extend(boxed(b"moof", &boxed(b"traf", &traf)));
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("stray-truns.mp4");
    std::fs::write(&source, data).unwrap();
    let run = package_measured(&source, &tmp.path().join("out"), &[]);
    assert!(!run.success);
    assert!(run.stderr.contains("it has no samples"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}
