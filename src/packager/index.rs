//! The compact media index: what the packager keeps of a source's `moov`.
//!
//! It holds, for the one video and the one audio track we package, a flat
//! array of samples (16 bytes each), their decode times as runs
//! ([`Timeline`]) and the codec configuration. Everything a
//! segment needs is answered from here by index arithmetic or binary search;
//! the media bytes themselves stay in the file until a segment asks for them.

/// Audio tracks kept besides the first one, at most.
pub const MAX_MORE_AUDIO: usize = 8;

/// Most samples the packaged tracks of one file may have together: 8 Mi
/// samples is 128 MiB of index, 30 hours of 30 fps video with 48 kHz AAC.
pub const MAX_FILE_SAMPLES: u64 = 1 << 23;

/// Fewest bytes of file per sample we believe. A sample of a codec we carry
/// is at least a few bytes (a NAL length and header and a slice; an AAC,
/// AC-3 or MP3 frame), and its table entry usually adds four more: a file
/// that declares more samples than a quarter of its length has samples
/// that overlap or are empty, which only a hostile file needs.
pub const MIN_BYTES_PER_SAMPLE: u64 = 4;

/// Most samples the packaged tracks of a file of `file_len` bytes may
/// have together: `min(2^23, file_len / 4)`. It bounds the index (16 bytes
/// a sample, 24 with variable durations) and all per-sample work by the file's own size.
pub fn sample_budget(file_len: u64) -> u64 {
    (file_len / MIN_BYTES_PER_SAMPLE).min(MAX_FILE_SAMPLES)
}

pub use crate::packager::timeline::Timeline;

/// One access unit: where its bytes are. When it is decoded is its track's
/// [`Timeline`]'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Absolute file offset of the sample's first byte.
    pub offset: u64,
    pub size: u32,
    /// Composition offset (ISO/IEC 14496-12 8.6.1.3): PTS = DTS + `cts_offset`.
    pub cts_offset: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Hevc,
    /// AV1 and VP9: carried in CMAF only; samples are not NAL units.
    Av1,
    Vp9,
}

impl VideoCodec {
    /// Whether samples are length-prefixed NAL units (H.264, HEVC).
    pub fn is_nal(self) -> bool {
        matches!(self, VideoCodec::H264 | VideoCodec::Hevc)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoConfig {
    pub codec: VideoCodec,
    /// Bytes of the length field before each NAL unit in a sample (1, 2 or 4).
    pub nal_length_size: u8,
    /// SPS/PPS (H.264) or VPS/SPS/PPS (HEVC) NAL units, in decoding order.
    pub parameter_sets: Vec<Vec<u8>>,
    pub width: u16,
    pub height: u16,
    /// RFC 6381 `CODECS` value, e.g. `avc1.64001f`.
    pub codec_string: String,
    /// The body of the sample entry's `avcC` or `hvcC`, as the source has
    /// it (fragmented MP4 carries it as is).
    pub config: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC, carried as ADTS in MPEG-TS. The fields fill the ADTS header
    /// (ISO/IEC 13818-7 6.2): `profile` is the core object type minus one.
    Aac {
        profile: u8,
        sampling_index: u8,
        channel_config: u8,
    },
    /// MPEG-1/2 Layer III, carried as is.
    Mp3,
    Ac3,
    Eac3,
    /// Opus and FLAC: carried in CMAF only.
    Opus,
    Flac,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioConfig {
    pub codec: AudioCodec,
    pub sample_rate: u32,
    pub channels: u16,
    pub codec_string: String,
    /// The body of the sample entry's `esds`, `dac3` or `dec3`, as the
    /// source has it; empty for MP3 without an `esds`.
    pub config: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Codec {
    Video(VideoConfig),
    Audio(AudioConfig),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    pub track_id: u32,
    pub timescale: u32,
    /// ISO 639-2/T language of the media (`mdhd`), e.g. `eng`; `und` when
    /// unknown.
    pub language: String,
    pub codec: Codec,
    /// Samples in decode order.
    pub samples: Vec<Sample>,
    /// Their decode times, in the track's timescale from the start of its
    /// media, and the time after the last.
    pub times: Timeline,
    /// Indexes of sync samples, ascending; `None` when every sample is one.
    pub sync: Option<Vec<u32>>,
    /// Video: the sync samples a decoder can really start at (an H.264 IDR
    /// picture; an H.265 IDR or BLA picture, or a CRA with no RASL picture
    /// after it), found in their NAL unit headers; ascending. Segments start
    /// at these. Empty for audio (every frame is one), and for a video
    /// track that has none: its segments then start at sync samples and do
    /// not count as independent.
    pub random_access: Vec<u32>,
    /// Video with 1- or 2-byte NAL lengths: the NAL units in each sample,
    /// since each grows by `4 - nal_length_size` bytes in Annex B and the
    /// segment layout must be exact. Empty otherwise.
    pub nal_units: Vec<u32>,
    /// Added to a composition time to get the presentation time: the edit
    /// list's leading empty edits minus its `media_time` (14496-12 8.6.6).
    pub presentation_shift: i64,
    /// Subtracted from decode times so that DTS <= PTS for every sample
    /// even when composition offsets are negative (14496-12 8.6.1.4).
    pub decode_delay: i64,
}

impl Track {
    pub fn is_video(&self) -> bool {
        matches!(self.codec, Codec::Video(_))
    }

    pub fn is_sync(&self, index: usize) -> bool {
        match &self.sync {
            None => true,
            Some(list) => list.binary_search(&(index as u32)).is_ok(),
        }
    }

    /// [`Track::is_sync`] for samples asked in ascending order from
    /// `first`: one step per sync sample instead of a search per sample.
    pub fn sync_from(&self, first: usize) -> SyncCursor<'_> {
        let list = self.sync.as_deref();
        SyncCursor {
            list,
            at: list.map_or(0, |l| l.partition_point(|&s| (s as usize) < first)),
        }
    }

    /// Whether a decoder can start at sample `index` (see `random_access`).
    pub fn is_random_access(&self, index: usize) -> bool {
        match &self.codec {
            Codec::Audio(_) => true,
            Codec::Video(_) => self.random_access.binary_search(&(index as u32)).is_ok(),
        }
    }

    /// Where video segments may start: the random access points, or the
    /// sync samples when there is none (see `random_access`).
    pub fn cut_candidates(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match (&self.random_access, &self.sync) {
            (ra, _) if !ra.is_empty() => Box::new(ra.iter().map(|&i| i as usize)),
            (_, Some(sync)) => Box::new(sync.iter().map(|&i| i as usize)),
            (_, None) => Box::new(0..self.samples.len()),
        }
    }

    /// Bytes sample `index` grows by when its NAL lengths become Annex B
    /// start codes (4 bytes each): none with 4-byte lengths.
    pub fn annexb_growth(&self, index: usize) -> usize {
        match (&self.codec, self.nal_units.get(index)) {
            (Codec::Video(v), Some(&n)) => {
                4usize.saturating_sub(usize::from(v.nal_length_size)) * n as usize
            }
            _ => 0,
        }
    }

    /// Decode time of sample `index`, in the track's timescale.
    #[inline]
    pub fn dts(&self, index: usize) -> i64 {
        self.times.dts(index)
    }

    /// Decode time just after the last sample (its DTS plus its duration).
    #[inline]
    pub fn end_dts(&self) -> i64 {
        self.times.end()
    }

    #[inline]
    pub fn duration_of(&self, index: usize) -> i64 {
        self.times.duration(index)
    }

    /// Presentation time of a sample in 90 kHz units, before the stream offset.
    #[inline]
    pub fn pts_90k(&self, index: usize) -> i64 {
        let cts = i64::from(self.samples[index].cts_offset);
        self.to_90k(self.dts(index) + cts + self.presentation_shift)
    }

    /// Whether sample `index` is presented at another time than it is
    /// decoded, in 90 kHz units (its PES header then carries a DTS).
    #[inline]
    pub fn has_own_pts(&self, index: usize) -> bool {
        let apart = i64::from(self.samples[index].cts_offset) + self.decode_delay;
        match apart {
            0 => false,
            // A tick of this timescale is at least one of 90 kHz (for
            // any time short of the clamping in `rescale`).
            _ if self.timescale <= 90_000 && self.dts(index).unsigned_abs() < 1 << 40 => true,
            _ => self.pts_90k(index) != self.dts_90k(index),
        }
    }

    /// Decode time of a sample in 90 kHz units, before the stream offset.
    #[inline]
    pub fn dts_90k(&self, index: usize) -> i64 {
        self.to_90k(self.dts(index) + self.presentation_shift - self.decode_delay)
    }

    /// [`Track::dts_90k`] of the samples from `first` on, in order.
    pub fn dts_90k_from(&self, first: usize) -> impl Iterator<Item = i64> + '_ {
        let shift = self.presentation_shift - self.decode_delay;
        self.times
            .iter_from(first)
            .map(move |dts| self.to_90k(dts + shift))
    }

    /// Presentation time just after the last sample is shown, in 90 kHz units.
    pub fn end_pts_90k(&self) -> i64 {
        // A sample is shown until the next one's decode time (the last
        // until the end).
        let Some(last) = self.samples.last() else {
            return self.to_90k(self.presentation_shift);
        };
        let mut max_end = self.end_dts() + i64::from(last.cts_offset);
        for (s, next) in self.samples.iter().zip(self.times.iter_from(1)) {
            max_end = max_end.max(next + i64::from(s.cts_offset));
        }
        self.to_90k(max_end + self.presentation_shift)
    }

    #[inline]
    pub fn to_90k(&self, t: i64) -> i64 {
        rescale(t, self.timescale, 90_000)
    }
}

/// See [`Track::sync_from`].
pub struct SyncCursor<'t> {
    list: Option<&'t [u32]>,
    /// The first sync sample not behind the samples asked so far.
    at: usize,
}

impl SyncCursor<'_> {
    /// Whether sample `index`, at or after the last one asked, is a sync
    /// sample.
    pub fn is_sync(&mut self, index: usize) -> bool {
        let Some(list) = self.list else {
            return true;
        };
        while list.get(self.at).is_some_and(|&s| (s as usize) < index) {
            self.at += 1;
        }
        list.get(self.at) == Some(&(index as u32))
    }
}

/// `t * to / from`, rounded down, without overflow for any media time. A
/// timescale of 0 (a broken `mvhd`) is taken as 1.
pub fn rescale(t: i64, from: u32, to: u32) -> i64 {
    // Per sample, several times over: 64-bit arithmetic where it cannot
    // overflow, which is every real timestamp.
    if from == to && from != 0 {
        return t;
    }
    if let Some(product) = t.checked_mul(i64::from(to)) {
        return product.div_euclid(i64::from(from.max(1)));
    }
    let wide = (i128::from(t) * i128::from(to)).div_euclid(i128::from(from.max(1)));
    wide.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// What we package of one source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaIndex {
    pub file_len: u64,
    pub video: Option<Track>,
    /// The audio track MPEG-TS carries: the first enabled one.
    pub audio: Option<Track>,
    /// The other audio tracks (other languages, commentary),
    /// at most [`MAX_MORE_AUDIO`]: CMAF renditions of their own.
    pub more_audio: Vec<Track>,
    /// Tracks left out, each with the reason, for a warning.
    pub skipped: Vec<String>,
    /// Subtitle tracks the file has (read on their own, see
    /// [`crate::packager::mp4::read_text_tracks_from`]): with none, the
    /// file is not read again for them.
    pub text_tracks: u32,
}

impl MediaIndex {
    /// Bytes of memory the index's tables take.
    pub fn memory_bytes(&self) -> usize {
        self.all_tracks()
            .map(|t| {
                t.samples.len() * std::mem::size_of::<Sample>()
                    + t.times.memory_bytes()
                    + (t.sync.as_ref().map_or(0, Vec::len)
                        + t.random_access.len()
                        + t.nal_units.len())
                        * std::mem::size_of::<u32>()
            })
            .sum()
    }

    /// Checks the invariants planning and muxing rely on (see
    /// [`validate`](crate::packager::validate)).
    pub fn validate(&self) -> crate::packager::error::Result<()> {
        crate::packager::validate::validate(self)
    }

    /// The tracks MPEG-TS carries: the video and the first audio track.
    pub fn tracks(&self) -> impl Iterator<Item = &Track> {
        self.video.iter().chain(self.audio.iter())
    }

    /// Every track of the index, the other audio tracks too.
    pub fn all_tracks(&self) -> impl Iterator<Item = &Track> {
        self.tracks().chain(self.more_audio.iter())
    }

    /// Why this source cannot be carried in MPEG-TS, if it cannot: a codec
    /// that only CMAF carries.
    pub fn ts_refusal(&self) -> Option<String> {
        let video = self.video.as_ref().and_then(|t| match &t.codec {
            Codec::Video(v) if !v.codec.is_nal() => Some(&v.codec_string),
            _ => None,
        });
        let audio = self.audio.as_ref().and_then(|t| match &t.codec {
            Codec::Audio(a) if matches!(a.codec, AudioCodec::Opus | AudioCodec::Flac) => {
                Some(&a.codec_string)
            }
            _ => None,
        });
        video.or(audio).map(|codec| {
            format!("{codec} cannot be carried in MPEG-TS: play it as CMAF (the /cmaf/ URLs)")
        })
    }

    /// MSOD suffix of this rendition's names: `av`, `a` or `v`.
    pub fn kind_suffix(&self) -> &'static str {
        match (&self.video, &self.audio) {
            (Some(_), Some(_)) => "av",
            (None, Some(_)) => "a",
            _ => "v",
        }
    }
}
