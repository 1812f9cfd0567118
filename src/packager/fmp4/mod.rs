//! Fragmented MP4 (ISO/IEC 14496-12 8.8; CMAF, ISO/IEC 23000-19): an init
//! segment per track and, per segment of the plan, a media segment per
//! track, from the same index and the same cuts as the MPEG-TS output.
//!
//! Times are the TS output's, in each track's own timescale: the edit list
//! and the stream offset are in the decode times (`tfdt`), composition
//! offsets are shifted by the track's decode delay so that none is negative
//! (`trun` version 0), and durations are the source's, so nothing drifts.
//! The init segment carries the source's own codec configuration box.
//! Samples go into `mdat` as they are in the source (length-prefixed NAL
//! units, raw audio frames), read a batch at a time.
//!
//! Protected (Common Encryption, ISO/IEC 23001-7, scheme `cbcs`): the sample
//! entry becomes `encv`/`enca` with a `sinf` (`frma`, `schm`, `tenc` with
//! the key's id and the constant IV), the `moov` a `pssh` of the W3C common
//! system (for ClearKey, W3C EME); a media segment's `traf` adds `saiz`,
//! `saio` and `senc` (its samples' subsamples), and its samples are
//! encrypted ([`crate::packager::encrypt`]).

mod boxes;

use std::io::Write;

use boxes::{bx, full, u16, u32, u64, unity_matrix, zeros};

use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{AudioCodec, Codec, MediaIndex, Track, VideoCodec, MAX_MORE_AUDIO};
use crate::packager::media::{Batch, MediaSource, Wanted};
use crate::packager::segment::Segment;

/// How a track's samples are encrypted (`cbcs`).
#[derive(Clone, Copy, Debug)]
pub struct Sealing {
    pub key: crate::packager::encrypt::Key,
    /// The key's id (`tenc`'s default_KID, `pssh`, the MPD's
    /// `cenc:default_KID`).
    pub kid: [u8; 16],
    /// The constant IV of every sample.
    pub iv: [u8; 16],
}

/// The W3C common PSSH system (ISO/IEC 23001-7 8.1.3, W3C EME
/// "cenc" initialization data): lists the key ids.
const COMMON_SYSTEM_ID: [u8; 16] = [
    0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b,
];

/// The `pssh` box of the W3C common system naming `kid`: version 1, the
/// key ids and no system data (ISO/IEC 23001-7 8.1.1).
pub fn common_pssh(kid: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(52);
    full(&mut out, b"pssh", 1, 0, |o| {
        o.extend_from_slice(&COMMON_SYSTEM_ID);
        u32(o, 1);
        o.extend_from_slice(kid);
        u32(o, 0);
    });
    out
}

/// One track of a source, as a CMAF track of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    /// `Audio(0)`: the first audio track (the one MPEG-TS carries);
    /// `Audio(n)`: the n-th of the others (`MediaIndex::more_audio`).
    Audio(u8),
}

impl TrackKind {
    /// In URLs: `v`, `a`, then `a2`, `a3`... for the other audio tracks.
    pub fn suffix(self) -> String {
        match self {
            TrackKind::Video => "v".to_string(),
            TrackKind::Audio(0) => "a".to_string(),
            TrackKind::Audio(n) => format!("a{}", n + 1),
        }
    }

    pub fn from_suffix(s: &str) -> Option<TrackKind> {
        match s {
            "v" => Some(TrackKind::Video),
            "a" => Some(TrackKind::Audio(0)),
            _ => {
                let n = s.strip_prefix('a')?;
                if n.starts_with('0') || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let n: usize = n.parse().ok()?;
                (2..=MAX_MORE_AUDIO + 1)
                    .contains(&n)
                    .then(|| TrackKind::Audio((n - 1) as u8))
            }
        }
    }

    /// Every track of `index`: video, then audio in order.
    pub fn all(index: &MediaIndex) -> Vec<TrackKind> {
        let video = index.video.as_ref().map(|_| TrackKind::Video);
        let first_audio = index.audio.as_ref().map(|_| TrackKind::Audio(0));
        let more = (0..index.more_audio.len()).map(|n| TrackKind::Audio(n as u8 + 1));
        video.into_iter().chain(first_audio).chain(more).collect()
    }

    pub fn is_video(self) -> bool {
        self == TrackKind::Video
    }

    pub fn track(self, index: &MediaIndex) -> Option<&Track> {
        match self {
            TrackKind::Video => index.video.as_ref(),
            TrackKind::Audio(0) => index.audio.as_ref(),
            TrackKind::Audio(n) => index.more_audio.get(usize::from(n) - 1),
        }
    }

    /// The samples of `segment` in this track.
    pub fn range(self, segment: &Segment) -> std::ops::Range<usize> {
        match self {
            TrackKind::Video => segment.video.clone(),
            TrackKind::Audio(0) => segment.audio.clone(),
            TrackKind::Audio(n) => segment
                .more_audio
                .get(usize::from(n) - 1)
                .cloned()
                .unwrap_or(0..0),
        }
    }
}

/// A track's times in fragmented MP4, in its timescale.
pub struct Timeline<'t> {
    track: &'t Track,
    /// Added to a sample's DTS to get its decode time.
    shift: i64,
}

impl<'t> Timeline<'t> {
    /// The times of `track` with the stream offset of the TS output.
    pub fn new(track: &'t Track, offset_90k: i64) -> Timeline<'t> {
        let offset =
            (i128::from(offset_90k) * i128::from(track.timescale) + 45_000).div_euclid(90_000);
        Timeline {
            track,
            shift: offset as i64 + track.presentation_shift - track.decode_delay,
        }
    }

    pub fn timescale(&self) -> u32 {
        self.track.timescale
    }

    pub fn decode_time(&self, i: usize) -> u64 {
        (self.track.dts(i) + self.shift).max(0) as u64
    }

    /// Composition offset, never negative.
    pub fn composition_offset(&self, i: usize) -> u32 {
        (i64::from(self.track.samples[i].cts_offset) + self.track.decode_delay)
            .clamp(0, u32::MAX.into()) as u32
    }

    pub fn presentation_time(&self, i: usize) -> u64 {
        self.decode_time(i) + u64::from(self.composition_offset(i))
    }

    pub fn duration(&self, i: usize) -> u32 {
        self.track.duration_of(i).clamp(0, u32::MAX.into()) as u32
    }

    /// Presentation time and duration of `range`: from its first sample's
    /// presentation to the next range's (the end of the track for the last).
    pub fn span(&self, range: std::ops::Range<usize>) -> (u64, u64) {
        let start = self.presentation_time(range.start);
        let end = if range.end < self.track.samples.len() {
            self.presentation_time(range.end)
        } else {
            // The last sample shown, which with B-frames is not the last
            // one decoded.
            range
                .map(|i| self.presentation_time(i) + u64::from(self.duration(i)))
                .max()
                .unwrap_or(start)
        };
        (start, end.saturating_sub(start))
    }
}

/// The init segment of `kind`'s track: `ftyp`, and a `moov` with one track,
/// its codec configuration and `mvex`; protected with `sealing`, if given.
pub fn init_segment(
    index: &MediaIndex,
    kind: TrackKind,
    sealing: Option<&Sealing>,
) -> Result<Vec<u8>> {
    let track = kind
        .track(index)
        .ok_or_else(|| Error::NotFound(format!("no {kind:?} track")))?;
    let mut out = Vec::with_capacity(1024);
    bx(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"iso6");
        u32(o, 0);
        o.extend_from_slice(b"iso6cmfcdashmsix");
    });
    let (width, height) = match &track.codec {
        Codec::Video(v) => (v.width, v.height),
        Codec::Audio(_) => (0, 0),
    };
    bx(&mut out, b"moov", |o| {
        full(o, b"mvhd", 0, 0, |o| {
            zeros(o, 8);
            u32(o, 1000);
            u32(o, 0);
            u32(o, 0x0001_0000);
            u16(o, 0x0100);
            zeros(o, 10);
            unity_matrix(o);
            zeros(o, 24);
            // next_track_ID; all ones when no larger ID is left (8.2.2.3).
            u32(o, track.track_id.saturating_add(1));
        });
        bx(o, b"trak", |o| {
            full(o, b"tkhd", 0, 0x7, |o| {
                zeros(o, 8);
                u32(o, track.track_id);
                zeros(o, 8);
                zeros(o, 8);
                u16(o, 0);
                u16(o, 0);
                u16(o, if kind.is_video() { 0 } else { 0x0100 });
                u16(o, 0);
                unity_matrix(o);
                u32(o, u32::from(width) << 16);
                u32(o, u32::from(height) << 16);
            });
            bx(o, b"mdia", |o| {
                full(o, b"mdhd", 0, 0, |o| {
                    zeros(o, 8);
                    u32(o, track.timescale);
                    u32(o, 0);
                    u16(o, packed_language(&track.language));
                    u16(o, 0);
                });
                full(o, b"hdlr", 0, 0, |o| {
                    u32(o, 0);
                    o.extend_from_slice(match kind {
                        TrackKind::Video => b"vide",
                        TrackKind::Audio(_) => b"soun",
                    });
                    zeros(o, 12);
                    o.extend_from_slice(b"casterpak\0");
                });
                bx(o, b"minf", |o| {
                    match kind {
                        TrackKind::Video => full(o, b"vmhd", 0, 1, |o| zeros(o, 8)),
                        TrackKind::Audio(_) => full(o, b"smhd", 0, 0, |o| zeros(o, 4)),
                    }
                    bx(o, b"dinf", |o| {
                        full(o, b"dref", 0, 0, |o| {
                            u32(o, 1);
                            full(o, b"url ", 0, 1, |_| {});
                        });
                    });
                    bx(o, b"stbl", |o| {
                        full(o, b"stsd", 0, 0, |o| {
                            u32(o, 1);
                            sample_entry(o, track, sealing);
                        });
                        for table in [b"stts", b"stsc", b"stco"] {
                            full(o, table, 0, 0, |o| u32(o, 0));
                        }
                        full(o, b"stsz", 0, 0, |o| u64(o, 0));
                    });
                });
            });
        });
        bx(o, b"mvex", |o| {
            full(o, b"trex", 0, 0, |o| {
                u32(o, track.track_id);
                u32(o, 1);
                zeros(o, 12);
            });
        });
        if let Some(sealing) = sealing {
            o.extend_from_slice(&common_pssh(&sealing.kid));
        }
    });
    Ok(out)
}

/// The `sinf` of a protected sample entry whose format was `original`:
/// `cbcs` version 1.0, video in the pattern 1:9, audio whole (0:0), a
/// constant IV (ISO/IEC 23001-7 8.2, 10.4).
fn sinf(o: &mut Vec<u8>, original: &[u8; 4], sealing: &Sealing, video: bool) {
    bx(o, b"sinf", |o| {
        bx(o, b"frma", |o| o.extend_from_slice(original));
        full(o, b"schm", 0, 0, |o| {
            o.extend_from_slice(b"cbcs");
            u32(o, 0x0001_0000);
        });
        bx(o, b"schi", |o| {
            full(o, b"tenc", 1, 0, |o| {
                o.push(0);
                o.push(if video { 0x19 } else { 0x00 });
                // isProtected, Per_Sample_IV_Size 0: the constant IV follows.
                o.push(1);
                o.push(0);
                o.extend_from_slice(&sealing.kid);
                o.push(16);
                o.extend_from_slice(&sealing.iv);
            });
        });
    });
}

/// The sample entry of `track`, with its codec configuration box; for a
/// protected track, `encv`/`enca` with a `sinf` after it.
fn sample_entry(o: &mut Vec<u8>, track: &Track, sealing: Option<&Sealing>) {
    let entry = |codec: &[u8; 4], video: bool| -> [u8; 4] {
        match sealing {
            Some(_) if video => *b"encv",
            Some(_) => *b"enca",
            None => *codec,
        }
    };
    match &track.codec {
        Codec::Video(v) => {
            let config = match v.codec {
                VideoCodec::H264 => b"avcC",
                VideoCodec::Hevc => b"hvcC",
                VideoCodec::Av1 => b"av1C",
                VideoCodec::Vp9 => b"vpcC",
            };
            bx(o, &entry(entry_of_video(v.codec), true), |o| {
                zeros(o, 6);
                u16(o, 1);
                zeros(o, 16);
                u16(o, v.width);
                u16(o, v.height);
                u32(o, 0x0048_0000);
                u32(o, 0x0048_0000);
                u32(o, 0);
                u16(o, 1);
                zeros(o, 32);
                u16(o, 0x0018);
                u16(o, 0xffff);
                bx(o, config, |o| o.extend_from_slice(&v.config));
                if let Some(sealing) = sealing {
                    sinf(o, entry_of_video(v.codec), sealing, true);
                }
            });
        }
        Codec::Audio(a) => {
            let original = match a.codec {
                AudioCodec::Aac { .. } | AudioCodec::Mp3 => b"mp4a",
                AudioCodec::Ac3 => b"ac-3",
                AudioCodec::Eac3 => b"ec-3",
                AudioCodec::Opus => b"Opus",
                AudioCodec::Flac => b"fLaC",
            };
            bx(o, &entry(original, false), |o| {
                zeros(o, 6);
                u16(o, 1);
                zeros(o, 8);
                u16(o, a.channels.max(1));
                u16(o, 16);
                zeros(o, 4);
                // 16.16 fixed point: rates above 65535 Hz do not fit.
                u32(o, a.sample_rate.min(0xffff) << 16);
                match a.codec {
                    AudioCodec::Ac3 => bx(o, b"dac3", |o| o.extend_from_slice(&a.config)),
                    AudioCodec::Eac3 => bx(o, b"dec3", |o| o.extend_from_slice(&a.config)),
                    AudioCodec::Opus => bx(o, b"dOps", |o| o.extend_from_slice(&a.config)),
                    AudioCodec::Flac => bx(o, b"dfLa", |o| o.extend_from_slice(&a.config)),
                    AudioCodec::Mp3 if a.config.is_empty() => mp3_esds(o, track.track_id),
                    _ => bx(o, b"esds", |o| o.extend_from_slice(&a.config)),
                }
                if let Some(sealing) = sealing {
                    sinf(o, original, sealing, false);
                }
            });
        }
    }
}

/// A video codec's sample entry type; HEVC as hvc1, as Apple's HLS
/// authoring specification asks.
fn entry_of_video(codec: VideoCodec) -> &'static [u8; 4] {
    match codec {
        VideoCodec::H264 => b"avc1",
        VideoCodec::Hevc => b"hvc1",
        VideoCodec::Av1 => b"av01",
        VideoCodec::Vp9 => b"vp09",
    }
}

/// An esds for MPEG-1/2 Layer III (objectTypeIndication 0x6B), for a source
/// whose `.mp3` sample entry had none (14496-1 7.2.6.5, 7.2.6.6).
fn mp3_esds(o: &mut Vec<u8>, track_id: u32) {
    full(o, b"esds", 0, 0, |o| {
        o.extend_from_slice(&[0x03, 21]);
        u16(o, track_id as u16);
        o.push(0);
        o.extend_from_slice(&[0x04, 13, 0x6b, 0x15]);
        zeros(o, 3 + 4 + 4);
        o.extend_from_slice(&[0x06, 1, 0x02]);
    });
}

/// ISO 639-2/T packed as in mdhd; `und` for anything else.
fn packed_language(language: &str) -> u16 {
    let bytes = language.as_bytes();
    let letters = if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_lowercase) {
        bytes
    } else {
        b"und"
    };
    letters
        .iter()
        .fold(0, |acc, &c| (acc << 5) | u16::from(c - 0x60))
}

/// What one media segment is made of, besides its samples' bytes.
pub struct FragmentInput<'a> {
    pub index: &'a MediaIndex,
    pub segment: &'a Segment,
    /// The segment's number (1-based), its `mfhd` sequence number.
    pub number: u32,
    pub kind: TrackKind,
    pub offset_90k: i64,
    /// A trick-play fragment: the segment's first picture alone (a place a
    /// decoder can start), shown for the whole segment.
    pub trick: bool,
}

impl FragmentInput<'_> {
    /// The track and the range of its samples in the segment (a trick
    /// fragment's first): not found when it has none.
    fn track_and_samples(&self) -> Result<(&Track, std::ops::Range<usize>)> {
        let track = self
            .kind
            .track(self.index)
            .ok_or_else(|| Error::NotFound(format!("no {:?} track", self.kind)))?;
        let range = self.kind.range(self.segment);
        if range.is_empty() {
            return Err(Error::NotFound(format!(
                "segment {} has no {:?} samples",
                self.number, self.kind
            )));
        }
        crate::packager::ts::check_segment_media(self.index, self.segment)?;
        if self.trick {
            if !self.kind.is_video() {
                return Err(Error::NotFound("trick play of an audio track".into()));
            }
            return Ok((track, range.start..range.start + 1));
        }
        Ok((track, range))
    }

    /// How long sample `i` of `range` lasts in the fragment: a trick
    /// fragment's one picture, the whole segment.
    fn duration(&self, timeline: &Timeline, range: &std::ops::Range<usize>, i: usize) -> u32 {
        if !self.trick {
            return timeline.duration(i);
        }
        let full = self.kind.range(self.segment);
        (range.start..full.end.max(range.end))
            .map(|j| u64::from(timeline.duration(j)))
            .sum::<u64>()
            .min(u64::from(u32::MAX)) as u32
    }
}

/// `trun` flags: data offset, then per sample duration and size; video
/// adds flags and composition offsets.
const TRUN_AUDIO: u32 = 0x000001 | 0x000100 | 0x000200;
const TRUN_VIDEO: u32 = TRUN_AUDIO | 0x000400 | 0x000800;
/// `tfhd` flags: default-base-is-moof.
const TFHD_BASE_IS_MOOF: u32 = 0x020000;
/// Sample flags (14496-12 8.8.3.1): depends on no other sample; depends on
/// others and is not a sync sample.
const SYNC_SAMPLE: u32 = 0x0200_0000;
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// Writes the media segment (`styp`, `moof`, `mdat`) of `input`'s track to
/// `out`, reading its samples from `src` at most `batch_bytes` at a time;
/// returns the bytes written.
pub fn write_fragment(
    input: &FragmentInput,
    src: &dyn MediaSource,
    out: &mut dyn Write,
    batch_bytes: usize,
) -> Result<u64> {
    let (track, range) = input.track_and_samples()?;
    let head = fragment_head(input, track, range.clone(), None);
    out.write_all(&head)?;
    let mut written = head.len() as u64;
    let mut batch = Batch::default();
    let mut wanted = Vec::new();
    let mut start = range.start;
    while start < range.end {
        wanted.clear();
        let mut bytes = 0usize;
        let mut end = start;
        while end < range.end && (end == start || bytes < batch_bytes) {
            let s = &track.samples[end];
            wanted.push(Wanted {
                offset: s.offset,
                size: s.size,
            });
            bytes += s.size as usize;
            end += 1;
        }
        batch.read(src, &wanted)?;
        for n in 0..wanted.len() {
            out.write_all(batch.sample(n))?;
        }
        written += bytes as u64;
        start = end;
    }
    out.flush()?;
    Ok(written)
}

/// The media segment of `input`'s track, its samples encrypted with
/// `sealing` (`cbcs`): made whole in memory, since its `moof` lists each
/// sample's subsamples, known once the sample is read. H.264 and HEVC
/// video, any audio.
pub fn sealed_fragment(
    input: &FragmentInput,
    src: &dyn MediaSource,
    sealing: &Sealing,
) -> Result<Vec<u8>> {
    use crate::packager::encrypt::{encrypt_cbcs, video_subsamples};
    let (track, range) = input.track_and_samples()?;
    let nal = match &track.codec {
        Codec::Video(v) => match v.codec {
            VideoCodec::H264 => Some((usize::from(v.nal_length_size), false)),
            VideoCodec::Hevc => Some((usize::from(v.nal_length_size), true)),
            VideoCodec::Av1 | VideoCodec::Vp9 => {
                return Err(Error::Unsupported(format!(
                    "{}: cbcs encryption of this codec",
                    v.codec_string
                )))
            }
        },
        Codec::Audio(_) => None,
    };
    let wanted: Vec<Wanted> = track.samples[range.clone()]
        .iter()
        .map(|s| Wanted {
            offset: s.offset,
            size: s.size,
        })
        .collect();
    let mut batch = Batch::default();
    batch.read(src, &wanted)?;
    let total: usize = wanted.iter().map(|w| w.size as usize).sum();
    let mut data = Vec::with_capacity(total);
    let mut aux = Vec::with_capacity(wanted.len());
    for (n, i) in range.clone().enumerate() {
        let start = data.len();
        data.extend_from_slice(batch.sample(n));
        let sample = &mut data[start..];
        let subsamples = match nal {
            Some((length_size, hevc)) => {
                video_subsamples(sample, length_size, hevc).ok_or_else(|| {
                    Error::corrupt(
                        FourCc(*b"mdat"),
                        track.samples[i].offset,
                        format!("sample {i}: its NAL unit lengths overrun it"),
                    )
                })?
            }
            None => Vec::new(),
        };
        let pattern = if nal.is_some() { (1, 9) } else { (0, 0) };
        encrypt_cbcs(&sealing.key, &sealing.iv, sample, &subsamples, pattern);
        aux.push(subsamples);
    }
    let mut out = fragment_head(input, track, range, Some(&aux));
    out.extend_from_slice(&data);
    Ok(out)
}

/// The length of the media segment of `kind` in `segment`, without making it.
pub fn fragment_len(index: &MediaIndex, segment: &Segment, kind: TrackKind) -> u64 {
    let Some(track) = kind.track(index) else {
        return 0;
    };
    let range = kind.range(segment);
    let samples: u64 = track.samples[range.clone()]
        .iter()
        .map(|s| u64::from(s.size))
        .sum();
    head_len(kind, range.len()) as u64 + samples
}

/// The length of the trick-play fragment of `segment` (its first picture).
pub fn trick_fragment_len(index: &MediaIndex, segment: &Segment) -> u64 {
    let Some(track) = &index.video else {
        return 0;
    };
    let first = track
        .samples
        .get(segment.video.start)
        .filter(|_| !segment.video.is_empty());
    first.map_or(0, |s| {
        head_len(TrackKind::Video, 1) as u64 + u64::from(s.size)
    })
}

/// Bytes of `styp`, `moof` and the `mdat` header for `count` samples.
fn head_len(kind: TrackKind, count: usize) -> usize {
    let per_sample = match kind {
        TrackKind::Video => 16,
        TrackKind::Audio(_) => 8,
    };
    let styp = 8 + 4 + 4 + 12;
    let mfhd = 16;
    let tfhd = 16;
    let tfdt = 20;
    let trun = 12 + 4 + 4 + per_sample * count;
    let traf = 8 + tfhd + tfdt + trun;
    let moof = 8 + mfhd + traf;
    styp + moof + 8
}

/// `styp`, `moof` and the `mdat` header of a media segment; with `aux`,
/// each sample's subsamples, for a protected one (`saiz`, `saio`, `senc`;
/// ISO/IEC 23001-7 7.2, 14496-12 8.7.8-9).
fn fragment_head(
    input: &FragmentInput,
    track: &Track,
    range: std::ops::Range<usize>,
    aux: Option<&[Vec<crate::packager::encrypt::Subsample>]>,
) -> Vec<u8> {
    let timeline = Timeline::new(track, input.offset_90k);
    let video = input.kind.is_video();
    let mut out = Vec::with_capacity(head_len(input.kind, range.len()));
    bx(&mut out, b"styp", |o| {
        o.extend_from_slice(b"msdh");
        u32(o, 0);
        o.extend_from_slice(b"msdhmsixcmfs");
    });
    let moof_at = out.len();
    let mut data_offset_at = 0;
    bx(&mut out, b"moof", |o| {
        full(o, b"mfhd", 0, 0, |o| u32(o, input.number));
        bx(o, b"traf", |o| {
            full(o, b"tfhd", 0, TFHD_BASE_IS_MOOF, |o| u32(o, track.track_id));
            full(o, b"tfdt", 1, 0, |o| {
                u64(o, timeline.decode_time(range.start))
            });
            let flags = if video { TRUN_VIDEO } else { TRUN_AUDIO };
            full(o, b"trun", 0, flags, |o| {
                u32(o, range.len() as u32);
                data_offset_at = o.len();
                u32(o, 0);
                for i in range.clone() {
                    u32(o, input.duration(&timeline, &range, i));
                    u32(o, track.samples[i].size);
                    if video {
                        u32(
                            o,
                            if track.is_sync(i) {
                                SYNC_SAMPLE
                            } else {
                                NON_SYNC_SAMPLE
                            },
                        );
                        u32(o, timeline.composition_offset(i));
                    }
                }
            });
            if let Some(aux) = aux {
                aux_info(o, aux, video, moof_at);
            }
        });
    });
    // The samples start just after the mdat header, counted from the moof.
    let data_offset = (out.len() - moof_at + 8) as u32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    let samples: u64 = track.samples[range].iter().map(|s| u64::from(s.size)).sum();
    u32(&mut out, (samples + 8) as u32);
    out.extend_from_slice(b"mdat");
    out
}

/// `saiz`, `saio` and `senc` of a protected fragment's samples: no
/// per-sample IV (a constant one), the subsamples of video. `moof_at`:
/// where the `moof` starts in `o` (`saio` counts from there).
fn aux_info(
    o: &mut Vec<u8>,
    aux: &[Vec<crate::packager::encrypt::Subsample>],
    video: bool,
    moof_at: usize,
) {
    let sizes: Vec<u8> = aux
        .iter()
        .map(|s| if video { (2 + 6 * s.len()) as u8 } else { 0 })
        .collect();
    full(o, b"saiz", 0, 0, |o| {
        // A default of 0 means a size for each sample follows (8.7.8.2).
        let same = sizes[0] != 0 && sizes.iter().all(|&n| n == sizes[0]);
        o.push(if same { sizes[0] } else { 0 });
        u32(o, sizes.len() as u32);
        if !same {
            o.extend_from_slice(&sizes);
        }
    });
    let mut offset_at = 0;
    full(o, b"saio", 0, 0, |o| {
        u32(o, 1);
        offset_at = o.len();
        u32(o, 0);
    });
    let mut data_at = 0;
    full(o, b"senc", 0, if video { 0x2 } else { 0 }, |o| {
        u32(o, aux.len() as u32);
        data_at = o.len();
        if video {
            for subsamples in aux {
                u16(o, subsamples.len() as u16);
                for s in subsamples {
                    u16(o, s.clear);
                    u32(o, s.protected);
                }
            }
        }
    });
    let offset = (data_at - moof_at) as u32;
    o[offset_at..offset_at + 4].copy_from_slice(&offset.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: a track ID of 2^32-1 overflowed next_track_ID.
    #[test]
    fn the_largest_track_id_leaves_next_track_id_all_ones() {
        let data = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aac-only.m4a"),
        )
        .unwrap();
        let mut index = crate::packager::mp4::read_index_from_bytes(&data).unwrap();
        index.audio.as_mut().unwrap().track_id = u32::MAX;
        let init = init_segment(&index, TrackKind::Audio(0), None).unwrap();
        // mvhd: after its header, version/flags, 2 times, timescale,
        // duration, rate, volume, 10 reserved, the matrix and 24 bytes.
        let mvhd = init.windows(4).position(|w| w == b"mvhd").unwrap() - 4;
        let at = mvhd + 8 + 4 + 8 + 4 + 4 + 4 + 2 + 10 + 36 + 24;
        assert_eq!(init[at..at + 4], [0xff; 4]);
    }

    #[test]
    fn languages_pack_as_mdhd_has_them() {
        assert_eq!(packed_language("eng"), 0x15c7);
        assert_eq!(packed_language("und"), 0x55c4);
        assert_eq!(packed_language("en"), 0x55c4);
    }
}
