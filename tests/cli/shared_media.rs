//! Every file of `../shared/media` (real-world MP4/MOV files from many
//! muxers, and broken ones) either packages and validates, or fails with
//! the clear error listed here. The table is the record of what casterpak
//! does with each; a file missing from it fails the test.

use std::path::Path;

use predicates::prelude::*;

use crate::support::{casterpak, package, validate_package};

enum Expect {
    /// Packages into a rendition of this kind (`av`, `a`, `v`).
    Packages(&'static str),
    /// Fails with an error containing this text.
    Fails(&'static str),
    /// Refused as MPEG-TS with this text, and packages as CMAF.
    CmafOnly(&'static str),
}
use Expect::{CmafOnly, Fails, Packages};

#[rustfmt::skip]
const EXPECTED: &[(&str, Expect, &str)] = &[
    ("h264-high-bframes-aac-ffmpeg.mp4", Packages("av"), "B-frames, edit lists on both tracks"),
    ("h264-cbaseline-aac-ts30000-moovend.mp4", Packages("av"), "moov at the end"),
    ("h264-main-aac-bento4-frag-mfra.mp4", Packages("av"), "fragmented (Bento4), mfra"),
    ("h264-high-bpyramid-gpac-ts30.mp4", Packages("v"), "timescale 30, B-pyramid"),
    ("h264-gpac-vfr-ts1000.mp4", Packages("v"), "variable frame rate"),
    ("h264-elst-10s-empty-edit.mp4", Packages("v"), "10 s empty edit: first PTS at 10 s"),
    ("h264-aac-elst-video-starts-1s.mp4", Packages("av"), "video starts 1 s after audio"),
    ("hevc-hev1-bframes-ts90000.mp4", Packages("v"), "hev1, in-band parameter sets"),
    ("hevc-hvc1-aac-ffmpeg.mp4", Packages("av"), "hvc1 + AAC"),
    ("apple-macos-screenrec-h264-vfr.mov", Packages("v"), "QuickTime, negative ctts: PTS start below 0"),
    ("apple-imovie-h264-aac-1frame.mp4", Packages("av"), "one frame; audio after the edit's end dropped"),
    ("apple-hls-fmp4-h264-cea608.mp4", Packages("v"), "fragmented; the c608 caption track is left out"),
    ("apple-garageband-aac-tx3g-chapters.m4a", Packages("a"), "text and JPEG artwork tracks left out"),
    ("android-camera-hevc-aac-mett-co64.mp4", Packages("av"), "co64; metadata track left out"),
    ("shaka-packager-h264-ondemand-sidx.mp4", Packages("v"), "fragmented with sidx"),
    ("mobitv-h264-aac-ts90000.mp4", Packages("av"), "audio is track 1"),
    ("mediabunny-h264-extreme-vfr.mp4", Packages("v"), "frame durations from 5 ms to 1.57 s"),
    ("h264-rotate-reflect-matrix.mp4", Packages("av"), "display matrix is not carried by TS"),
    ("h264-1frame-rot90.mp4", Packages("v"), "a single frame"),
    ("eac3-51-bento4.mp4", Packages("a"), "E-AC-3 5.1"),
    ("ac3-51-plus-aac-2tracks.mp4", Packages("a"), "the first audio track (AC-3) only; its bad block is the source's"),
    ("heaac-sbr-youtube-itag139.mp4", Packages("a"), "HE-AAC: ADTS carries the AAC-LC core, SBR is implicit"),
    ("mp3-in-mp4.m4a", Packages("a"), "MP3 in MP4"),
    ("h264-mp3-tx3g-fragmented.mp4", Packages("av"), "fragmented, MP3; its tx3g track (in the fragments) is a subtitle rendition"),
    ("ffmpeg-frag-mfra-bogus-duration.mp4", Packages("av"), "bogus mdhd duration is not used"),
    ("partially-fragmented.mp4", Packages("av"), "samples in the moov and in 44 fragments"),
    ("broken-mdat-too-long.mp4", Packages("av"), "mdat overruns the file but every sample is in it"),
    ("opus-in-mp4-ffmpeg.mp4", CmafOnly("opus cannot be carried in MPEG-TS"), "Opus has no HLS-TS mapping"),
    ("broken-free-box-size3.mp4", Fails("bad box size 3 (box 'free' at byte 32)"), "box smaller than its header"),
    ("broken-truncated-after-moov-large-stbl.m4b", Fails("lies past the end of the 1107870-byte file"), "no mdat at all"),
    ("broken-apple-co64-truncated-mdat.mp4", Fails("the file is truncated"), "mdat cut short"),
    ("broken-annexb-in-avc1.mp4", Fails("empty decoder configuration"), "Annex B samples, empty avcC"),
];

#[test]
#[cfg_attr(
    any(casterpak_no_shared_media, casterpak_no_ffmpeg),
    ignore = "needs ../shared/media; needs ffmpeg and ffprobe"
)]
fn every_shared_media_file_packages_and_validates_or_fails_clearly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let name = line.split('\t').next().unwrap();
        let (_, expect, _) = EXPECTED
            .iter()
            .find(|(file, _, _)| *file == name)
            .unwrap_or_else(|| panic!("{name} is not in the table of expected outcomes"));
        let source = dir.join(name);
        let out = tmp.path().join(name);
        match expect {
            Packages(kind) => {
                package(&[&source], &out, &[]);
                assert!(
                    out.join(format!("index_0_{kind}.m3u8")).exists(),
                    "{name} should be `{kind}`"
                );
                validate_package(&[&source], &out);
            }
            CmafOnly(message) => {
                casterpak()
                    .arg("package")
                    .arg(&source)
                    .arg("--out")
                    .arg(&out)
                    .assert()
                    .failure()
                    .stderr(predicate::str::contains(*message));
                package(&[&source], &out, &["--format", "cmaf"]);
                // ffmpeg's DASH demuxer wants an absolute path.
                let mpd = out.join("manifest.mpd").canonicalize().unwrap();
                for stream in ["v:0", "a:0"] {
                    assert_eq!(
                        crate::support::ffprobe_count(&mpd, stream, false),
                        crate::support::ffprobe_count(&source, stream, false),
                        "{name} {stream} as CMAF"
                    );
                }
            }
            Fails(message) => {
                casterpak()
                    .arg("package")
                    .arg(&source)
                    .arg("--out")
                    .arg(&out)
                    .assert()
                    .failure()
                    .stderr(predicate::str::contains(name).and(predicate::str::contains(*message)))
                    .stderr(predicate::str::contains("panicked").not());
                assert!(!out.exists(), "{name}: nothing is left behind");
            }
        }
    }
}
