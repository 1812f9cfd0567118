//! Helpers shared by the CLI tests: running the binary, finding fixtures
//! and tools, and validating a package with ffprobe, ffmpeg and m3u8-rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use m3u8_rs::{MasterPlaylist, MediaPlaylist, Playlist};

pub fn casterpak() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("casterpak").expect("the binary is built")
}

/// A token for the path patterns `acl`, good for an hour, signed with
/// `key` (`casterpak token`).
pub fn signed_for(key: &str, acl: &str) -> String {
    minted(key, acl, &[])
}

/// As [`signed_for`], also signing `data` (`casterpak token --data`).
pub fn signed_with_data(key: &str, acl: &str, data: &str) -> String {
    minted(key, acl, &["--data", data])
}

fn minted(key: &str, acl: &str, more: &[&str]) -> String {
    let out = casterpak()
        .env("CASTERPAK_TOKENS_KEY", key)
        .args(["token", "x", "--acl", acl, "--ttl", "1h"])
        .args(more)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Prints a line where `cargo test` shows it (the output of passing tests
/// is captured, but not what is written to the stderr handle directly).
/// `bytes` in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Checks `got` against the golden file `golden`; with `UPDATE_GOLDEN=1`
/// in the environment, rewrites it first (after a deliberate change).
pub fn assert_golden(golden: &Path, got: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(golden, got).unwrap();
    }
    let want =
        std::fs::read_to_string(golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    assert_eq!(got, want, "differs from {}", golden.display());
}

/// Runs `casterpak package` and returns the package directory.
pub fn package(inputs: &[&Path], out: &Path, extra: &[&str]) -> PathBuf {
    casterpak()
        .arg("package")
        .args(inputs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
        .success();
    out.to_owned()
}

pub fn parse_master(path: &Path) -> MasterPlaylist {
    match parse(path) {
        Playlist::MasterPlaylist(m) => m,
        Playlist::MediaPlaylist(_) => panic!("{} is not a master playlist", path.display()),
    }
}

pub fn parse_media(path: &Path) -> MediaPlaylist {
    match parse(path) {
        Playlist::MediaPlaylist(m) => m,
        Playlist::MasterPlaylist(_) => panic!("{} is not a media playlist", path.display()),
    }
}

fn parse(path: &Path) -> Playlist {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    m3u8_rs::parse_playlist_res(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

/// ffprobe's count of one stream: `select` is `v:0` or `a:0`; `decode`
/// counts decoded frames, otherwise demuxed packets. None: no such stream.
pub fn ffprobe_count(path: &Path, select: &str, decode: bool) -> Option<u64> {
    let (flag, field) = if decode {
        ("-count_frames", "nb_read_frames")
    } else {
        ("-count_packets", "nb_read_packets")
    };
    let out = Command::new("ffprobe")
        .args(["-v", "error", flag, "-select_streams", select])
        .args([
            "-show_entries",
            &format!("stream={field}"),
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?.trim().trim_end_matches(',');
    if first.is_empty() {
        return None;
    }
    Some(
        first
            .parse()
            .unwrap_or_else(|_| panic!("ffprobe count {first:?} for {}", path.display())),
    )
}

/// What `ffmpeg -v error` prints when decoding `path` completely.
pub fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let mut errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        errors.push_str(&format!("exit status {}", out.status));
    }
    errors
}

/// `format=start_time` of a file, in seconds.
pub fn start_time(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=start_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("start_time {text:?} of {}", path.display()))
}

/// Checks a package made of `sources` (rendition N = sources[N]) in `dir`
/// with independent tools: the playlists parse and agree with the files,
/// ffprobe counts as many frames as in the source, every segment decodes
/// alone (unless the source itself does not decode cleanly), and segment
/// start times follow the EXTINF durations.
pub fn validate_package(sources: &[&Path], dir: &Path) {
    let master = parse_master(&dir.join("master.m3u8"));
    let (iframes, variants): (Vec<_>, Vec<_>) = master.variants.iter().partition(|v| v.is_i_frame);
    assert_eq!(variants.len(), sources.len(), "one variant per input");
    for variant in iframes {
        assert_iframes_decode(dir, &variant.uri);
    }
    for (n, (variant, source)) in variants.into_iter().zip(sources).enumerate() {
        assert!(
            variant.uri.starts_with(&format!("index_{n}_")),
            "{}",
            variant.uri
        );
        let playlist_path = dir.join(&variant.uri);
        let media = parse_media(&playlist_path);
        assert_eq!(media.media_sequence, 1);
        assert!(media.end_list);
        let extinf: Vec<f64> = media
            .segments
            .iter()
            .map(|s| f64::from(s.duration))
            .collect();
        let longest = extinf.iter().cloned().fold(0.0, f64::max);
        assert_eq!(
            media.target_duration,
            longest.ceil() as u64,
            "TARGETDURATION"
        );

        let source_clean = decode_errors(source).is_empty();
        let source_frames = ffprobe_count(source, "v:0", false);
        // Video frames of the segments each decoded alone; None without video.
        let mut decoded_alone = None;
        let mut previous: Option<f64> = None;
        let mut peak_bps = 0.0f64;
        for (k, segment) in media.segments.iter().enumerate() {
            let path = dir.join(&segment.uri);
            let len = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .len();
            peak_bps = peak_bps.max(len as f64 * 8.0 / f64::from(segment.duration));
            if source_clean {
                let errors = decode_errors(&path);
                assert!(
                    errors.is_empty(),
                    "{} does not decode alone: {errors}",
                    path.display()
                );
                if let Some(frames) = ffprobe_count(&path, "v:0", true) {
                    *decoded_alone.get_or_insert(0) += frames;
                }
            }
            let start = start_time(&path);
            if let Some(previous) = previous {
                let gap = start - previous;
                assert!(
                    (gap - extinf[k - 1]).abs() < 0.1,
                    "{}: starts {gap:.3} s after the previous segment, whose EXTINF is {:.3}",
                    path.display(),
                    extinf[k - 1]
                );
            }
            previous = Some(start);
        }
        // A decoder that starts at a segment decodes all of its frames: a
        // segment that starts at a CRA followed by RASL pictures (open GOP)
        // decodes without an error, but without those pictures.
        if let (Some(got), Some(want)) = (decoded_alone, source_frames) {
            assert_eq!(
                got,
                want,
                "video frames of {}'s segments each decoded alone",
                playlist_path.display()
            );
        }
        assert_continuous(dir, &media);
        // BANDWIDTH is the peak segment bitrate of the TS as written (RFC
        // 8216 4.3.4.2): never below it, and not needlessly above.
        let declared = variant.bandwidth as f64;
        assert!(
            declared >= peak_bps * (1.0 - 1e-6) && declared <= peak_bps * 1.01,
            "BANDWIDTH {declared} vs measured peak {peak_bps:.0}"
        );

        for (select, decode) in [("v:0", true), ("a:0", false)] {
            let want = ffprobe_count(source, select, false);
            let got = ffprobe_count(&playlist_path, select, decode);
            if got.is_some() {
                assert_eq!(
                    got,
                    want,
                    "{select} frames of {} vs {}",
                    playlist_path.display(),
                    source.display()
                );
            }
        }
    }
}

/// The byte ranges of an I-frame playlist: (length, offset, segment URI).
pub fn iframe_ranges(playlist: &str) -> Vec<(usize, usize, &str)> {
    assert!(playlist.contains("#EXT-X-I-FRAMES-ONLY"), "{playlist}");
    let lines: Vec<&str> = playlist.lines().collect();
    let ranges = lines.iter().zip(&lines[1..]).filter_map(|(line, uri)| {
        let (len, at) = line.strip_prefix("#EXT-X-BYTERANGE:")?.split_once('@')?;
        Some((len.parse().unwrap(), at.parse().unwrap(), *uri))
    });
    ranges.collect()
}

/// Each byte range of the I-frame playlist `uri` in `dir`, cut from its
/// segment, is one picture that decodes alone.
fn assert_iframes_decode(dir: &Path, uri: &str) {
    let playlist = std::fs::read_to_string(dir.join(uri)).unwrap();
    let ranges = iframe_ranges(&playlist);
    assert!(!ranges.is_empty(), "{playlist}");
    for (len, at, segment) in ranges {
        let bytes = std::fs::read(dir.join(segment)).unwrap();
        let path = dir.join("iframe.ts.check");
        std::fs::write(&path, &bytes[at..at + len]).unwrap();
        let (pictures, errors) = (ffprobe_count(&path, "v:0", true), decode_errors(&path));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(pictures, Some(1), "{uri}: {segment}");
        assert_eq!(errors, "", "{uri}: {segment}");
    }
}

/// The segments of a playlist, joined, are one transport stream: ffmpeg
/// finds no continuity-counter break at the boundaries (RFC 8216 3).
fn assert_continuous(dir: &Path, media: &MediaPlaylist) {
    let joined: Vec<u8> = media
        .segments
        .iter()
        .flat_map(|s| std::fs::read(dir.join(&s.uri)).unwrap())
        .collect();
    let path = dir.join("joined.ts.check");
    std::fs::write(&path, joined).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "debug", "-f", "mpegts", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    std::fs::remove_file(&path).unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let breaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Continuity check failed"))
        .collect();
    assert!(breaks.is_empty(), "{}: {breaks:?}", dir.display());
}

/// The boxes in `data[range]` (ISO/IEC 14496-12 4.2): type and body range.
fn boxes(data: &[u8], range: std::ops::Range<usize>) -> Vec<([u8; 4], std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut pos = range.start;
    while pos + 8 <= range.end {
        let size32 = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let fourcc: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
        let (header, size) = match size32 {
            0 => (8, range.end - pos),
            1 => (
                16,
                u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap()) as usize,
            ),
            n => (8, n),
        };
        out.push((fourcc, pos + header..pos + size));
        pos += size;
    }
    out
}

fn child(data: &[u8], body: std::ops::Range<usize>, path: &[&[u8; 4]]) -> std::ops::Range<usize> {
    path.iter().fold(body, |at, fourcc| {
        boxes(data, at)
            .into_iter()
            .find(|(t, _)| t == *fourcc)
            .unwrap_or_else(|| panic!("no {:?} box", String::from_utf8_lossy(*fourcc)))
            .1
    })
}

fn be(data: &[u8], at: usize, len: usize) -> u64 {
    data[at..at + len]
        .iter()
        .fold(0, |n, &b| (n << 8) | u64::from(b))
}

/// One track's sample tables, as positions in the file.
struct Tables {
    /// Offset and size of each sample, and where its stsz entry is.
    samples: Vec<(usize, usize, usize)>,
    /// Where each chunk offset is, and its width (4 or 8).
    chunk_entries: Vec<(usize, usize)>,
    /// Body of the avcC box, for an H.264 track.
    avcc: Option<usize>,
}

fn read_tables(data: &[u8], trak: std::ops::Range<usize>) -> Tables {
    let stbl = child(data, trak, &[b"mdia", b"minf", b"stbl"]);
    let stsd = child(data, stbl.clone(), &[b"stsd"]);
    let entry = boxes(data, stsd.start + 8..stsd.end).remove(0);
    let avcc = (&entry.0 == b"avc1")
        .then(|| child(data, entry.1.start + 78..entry.1.end, &[b"avcC"]).start);
    let stsz = child(data, stbl.clone(), &[b"stsz"]);
    assert_eq!(be(data, stsz.start + 4, 4), 0, "a size per sample");
    let count = be(data, stsz.start + 8, 4) as usize;
    let wide = boxes(data, stbl.clone()).iter().any(|(t, _)| t == b"co64");
    let stco = child(data, stbl.clone(), &[if wide { b"co64" } else { b"stco" }]);
    let width = if wide { 8 } else { 4 };
    let chunk_entries: Vec<(usize, usize)> = (0..be(data, stco.start + 4, 4) as usize)
        .map(|c| (stco.start + 8 + c * width, width))
        .collect();
    let stsc = child(data, stbl, &[b"stsc"]);
    let runs: Vec<(usize, usize)> = (0..be(data, stsc.start + 4, 4) as usize)
        .map(|r| {
            let at = stsc.start + 8 + r * 12;
            (be(data, at, 4) as usize, be(data, at + 4, 4) as usize)
        })
        .collect();
    let mut samples = Vec::with_capacity(count);
    for (c, &(at, width)) in chunk_entries.iter().enumerate() {
        let per_chunk = runs
            .iter()
            .rev()
            .find(|(first, _)| *first <= c + 1)
            .unwrap()
            .1;
        let mut offset = be(data, at, width) as usize;
        for _ in 0..per_chunk {
            let entry = stsz.start + 12 + samples.len() * 4;
            let size = be(data, entry, 4) as usize;
            samples.push((offset, size, entry));
            offset += size;
        }
    }
    assert_eq!(samples.len(), count);
    Tables {
        samples,
        chunk_entries,
        avcc,
    }
}

/// Appends `sample` with its 4-byte NAL lengths rewritten to `len_size` bytes.
fn rewrite_nal_lengths(mut sample: &[u8], len_size: usize, out: &mut Vec<u8>) {
    while !sample.is_empty() {
        let nal_len = be(sample, 0, 4) as usize;
        assert!(nal_len < 1 << (8 * len_size), "a {nal_len}-byte NAL unit");
        out.extend_from_slice(&nal_len.to_be_bytes()[8 - len_size..]);
        out.extend_from_slice(&sample[4..4 + nal_len]);
        sample = &sample[4 + nal_len..];
    }
}

/// `data`, an MP4 whose moov comes before its mdat, with the NAL lengths of
/// its H.264 track rewritten from 4 bytes to `len_size`: the avcC's
/// lengthSizeMinusOne, every sample, their sizes in stsz and every track's
/// chunk offsets. No muxer we can run writes 1- or 2-byte lengths.
pub fn with_nal_length_size(data: &[u8], len_size: usize) -> Vec<u8> {
    let top = boxes(data, 0..data.len());
    let body = |t: &[u8; 4]| top.iter().find(|(f, _)| f == t).unwrap().1.clone();
    let (moov, mdat) = (body(b"moov"), body(b"mdat"));
    assert!(moov.end <= mdat.start, "moov before mdat");
    assert_ne!(
        be(data, mdat.start - 8, 4),
        1,
        "an mdat with an 8-byte header"
    );
    let tracks: Vec<Tables> = boxes(data, moov)
        .into_iter()
        .filter(|(t, _)| t == b"trak")
        .map(|(_, trak)| read_tables(data, trak))
        .collect();
    let video = tracks
        .iter()
        .find(|t| t.avcc.is_some())
        .expect("an H.264 track");
    let mut out = data[..mdat.start].to_vec();
    out[video.avcc.unwrap() + 4] = 0xfc | (len_size as u8 - 1);
    // The new mdat, and how much shorter it is before each old offset.
    let mut order: Vec<&(usize, usize, usize)> = video.samples.iter().collect();
    order.sort_by_key(|s| s.0);
    let mut shrunk_by: Vec<(usize, usize)> = vec![(0, 0)];
    let mut copied = mdat.start;
    for &&(offset, size, entry) in &order {
        out.extend_from_slice(&data[copied..offset]);
        let before = out.len();
        rewrite_nal_lengths(&data[offset..offset + size], len_size, &mut out);
        let new_size = out.len() - before;
        out[entry..entry + 4].copy_from_slice(&(new_size as u32).to_be_bytes());
        let total = shrunk_by.last().unwrap().1 + size - new_size;
        shrunk_by.push((offset + size, total));
        copied = offset + size;
    }
    out.extend_from_slice(&data[copied..mdat.end]);
    let new_end = out.len();
    out.extend_from_slice(&data[mdat.end..]);
    let mdat_size = (new_end - mdat.start + 8) as u32;
    out[mdat.start - 8..mdat.start - 4].copy_from_slice(&mdat_size.to_be_bytes());
    for &(at, width) in tracks.iter().flat_map(|t| &t.chunk_entries) {
        let old = be(data, at, width) as usize;
        let shift = shrunk_by
            .iter()
            .rev()
            .find(|(end, _)| *end <= old)
            .unwrap()
            .1;
        out[at..at + width].copy_from_slice(&((old - shift) as u64).to_be_bytes()[8 - width..]);
    }
    out
}

/// A tmpfs of `size` mounted on `dir` (which it creates), unmounted when
/// dropped: a real small filesystem, to fill. Mounting needs root, as CI
/// runs.
pub struct SmallDisk {
    pub dir: PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a {size} tmpfs (needs root)");
        SmallDisk {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A video source whose only segment is big: `seconds` of noise in one GOP
/// at 320x240, about 2.9 MB a second (over 4 MB for 2 s).
pub fn make_big_source(path: &Path, seconds: u32) {
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg(format!(
            "nullsrc=s=320x240:r=30:d={seconds},geq=random(1)*255:128:128"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "10",
            "-g",
            "300",
        ])
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg made the big source");
}
