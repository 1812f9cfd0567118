//! A compact binary form of the [`MediaIndex`], so that a parsed source
//! can be kept on disk and a restarted origin skips the moov work. All
//! numbers big-endian; samples take 16 bytes each, as in memory, and their
//! decode times are runs of one duration, as `stts` has them.
//!
//! ```text
//! "CPIX" version:u32 file_len:u64 video:track? audio:track? more_audio:[track] skipped:[str]
//!        text_tracks:u32
//! track   = track_id:u32 timescale:u32 language:str end_dts:i64 shift:i64 delay:i64 codec
//!           samples:[offset:u64 size:u32 cts:i32] times:[first:u32 duration:u32 dts:i64]
//!           sync:[u32]? random_access:[u32] nal_units:[u32]
//! X?      = 0:u8 | 1:u8 X          [X] = count:u32 X...       str = [u8]
//! ```

use crate::packager::error::{FourCc, Result};
use crate::packager::index::{
    AudioCodec, AudioConfig, Codec, MediaIndex, Sample, Timeline, Track, VideoCodec, VideoConfig,
};
use crate::packager::mp4::cursor::Cursor;
use crate::packager::timeline::Run;

const MAGIC: [u8; 4] = *b"CPIX";
/// 2: random access points and NAL unit counts. 3: languages, and the
/// codec configuration boxes (after each codec's fields, as `config:str`).
/// 4: the other audio tracks (`more_audio:[track]`, after `audio`).
/// 5: no new field; parameter sets that avc3/hev1 tracks keep in band are
/// in the configuration box, which older indexes lack.
/// 6: how many subtitle tracks the file has (`text_tracks:u32`, last).
/// 7: decode times as runs (`times`), after samples of 16 bytes.
/// 8: no new field; a fragmented file's subtitle tracks whose samples are
/// all in its fragments count in `text_tracks`, which older indexes lack.
pub const VERSION: u32 = 8;
const SAMPLE_LEN: usize = 16;
const RUN_LEN: usize = 16;

pub fn encode(index: &MediaIndex) -> Vec<u8> {
    let samples: usize = index.tracks().map(|t| t.samples.len()).sum();
    let mut out = Vec::with_capacity(64 + samples * SAMPLE_LEN);
    encode_to(index, &mut out).expect("writing to memory");
    out
}

/// Bytes gathered before each write of [`encode_to`].
const ENCODE_BUFFER: usize = 256 << 10;

/// As [`encode`], into `out` a buffer at a time: the encoded index of a
/// long file (16 bytes a sample) is never whole in memory beside it.
pub fn encode_to(index: &MediaIndex, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(ENCODE_BUFFER + 1024);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&VERSION.to_be_bytes());
    buf.extend_from_slice(&index.file_len.to_be_bytes());
    for track in [&index.video, &index.audio] {
        buf.push(u8::from(track.is_some()));
        if let Some(t) = track {
            encode_track(&mut buf, t, out)?;
        }
    }
    buf.extend_from_slice(&(index.more_audio.len() as u32).to_be_bytes());
    for t in &index.more_audio {
        encode_track(&mut buf, t, out)?;
    }
    buf.extend_from_slice(&(index.skipped.len() as u32).to_be_bytes());
    for s in &index.skipped {
        put_bytes(&mut buf, s.as_bytes());
    }
    buf.extend_from_slice(&index.text_tracks.to_be_bytes());
    out.write_all(&buf)
}

/// Appends `t` to `buf`, handing full buffers to `out`.
fn encode_track(buf: &mut Vec<u8>, t: &Track, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    encode_track_head(buf, t);
    buf.extend_from_slice(&(t.samples.len() as u32).to_be_bytes());
    for s in &t.samples {
        buf.extend_from_slice(&s.offset.to_be_bytes());
        buf.extend_from_slice(&s.size.to_be_bytes());
        buf.extend_from_slice(&s.cts_offset.to_be_bytes());
        flush_when_full(buf, out)?;
    }
    let runs = t.times.runs();
    buf.extend_from_slice(&(runs.len() as u32).to_be_bytes());
    for r in &runs {
        buf.extend_from_slice(&r.first.to_be_bytes());
        buf.extend_from_slice(&r.duration.to_be_bytes());
        buf.extend_from_slice(&r.dts.to_be_bytes());
        flush_when_full(buf, out)?;
    }
    buf.push(u8::from(t.sync.is_some()));
    if let Some(sync) = &t.sync {
        put_u32s(buf, sync);
    }
    put_u32s(buf, &t.random_access);
    put_u32s(buf, &t.nal_units);
    Ok(())
}

/// Hands `buf` to `out` once it holds [`ENCODE_BUFFER`] bytes.
fn flush_when_full(buf: &mut Vec<u8>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    if buf.len() >= ENCODE_BUFFER {
        out.write_all(buf)?;
        buf.clear();
    }
    Ok(())
}

/// A track's fields before its samples.
fn encode_track_head(out: &mut Vec<u8>, t: &Track) {
    out.extend_from_slice(&t.track_id.to_be_bytes());
    out.extend_from_slice(&t.timescale.to_be_bytes());
    put_bytes(out, t.language.as_bytes());
    for v in [t.end_dts(), t.presentation_shift, t.decode_delay] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    match &t.codec {
        Codec::Video(v) => {
            out.push(0);
            out.push(match v.codec {
                VideoCodec::H264 => 0,
                VideoCodec::Hevc => 1,
                VideoCodec::Av1 => 2,
                VideoCodec::Vp9 => 3,
            });
            out.push(v.nal_length_size);
            out.extend_from_slice(&v.width.to_be_bytes());
            out.extend_from_slice(&v.height.to_be_bytes());
            put_bytes(out, v.codec_string.as_bytes());
            out.extend_from_slice(&(v.parameter_sets.len() as u32).to_be_bytes());
            for ps in &v.parameter_sets {
                put_bytes(out, ps);
            }
            put_bytes(out, &v.config);
        }
        Codec::Audio(a) => {
            out.push(1);
            match a.codec {
                AudioCodec::Aac {
                    profile,
                    sampling_index,
                    channel_config,
                } => {
                    out.extend_from_slice(&[0, profile, sampling_index, channel_config]);
                }
                AudioCodec::Mp3 => out.push(1),
                AudioCodec::Ac3 => out.push(2),
                AudioCodec::Eac3 => out.push(3),
                AudioCodec::Opus => out.push(4),
                AudioCodec::Flac => out.push(5),
            }
            out.extend_from_slice(&a.sample_rate.to_be_bytes());
            out.extend_from_slice(&a.channels.to_be_bytes());
            put_bytes(out, a.codec_string.as_bytes());
            put_bytes(out, &a.config);
        }
    }
}

fn put_u32s(out: &mut Vec<u8>, list: &[u32]) {
    out.extend_from_slice(&(list.len() as u32).to_be_bytes());
    for i in list {
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn get_u32s(c: &mut Cursor, what: &str) -> Result<Vec<u32>> {
    let n = c.count(4, what)?;
    (0..n).map(|_| c.u32(what)).collect()
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads what [`encode`] wrote and checks it with the same validator as a
/// freshly read index; anything else is an error, never a panic.
pub fn decode(data: &[u8]) -> Result<MediaIndex> {
    let mut c = Cursor::new(data, 0, FourCc(MAGIC));
    if c.bytes(4, "magic")? != MAGIC || c.u32("version")? != VERSION {
        return Err(c.error("not a casterpak index of this version"));
    }
    let file_len = c.u64("file_len")?;
    let video = decode_optional_track(&mut c)?;
    let audio = decode_optional_track(&mut c)?;
    let count = c.count(4, "more audio count")?;
    if count > crate::packager::index::MAX_MORE_AUDIO {
        return Err(c.error(format!("{count} more audio tracks")));
    }
    let more_audio = (0..count)
        .map(|_| decode_track(&mut c))
        .collect::<Result<Vec<_>>>()?;
    let count = c.count(4, "skipped count")?;
    let mut skipped = Vec::with_capacity(count);
    for _ in 0..count {
        skipped.push(get_string(&mut c)?);
    }
    let text_tracks = c.u32("text track count")?;
    if c.remaining() != 0 {
        return Err(c.error("trailing bytes"));
    }
    let index = MediaIndex {
        file_len,
        video,
        audio,
        more_audio,
        skipped,
        text_tracks,
    };
    // Checked as a freshly read index is: the cache is a file like any other.
    index.validate()?;
    Ok(index)
}

fn decode_optional_track(c: &mut Cursor) -> Result<Option<Track>> {
    match c.u8("track present")? {
        0 => Ok(None),
        1 => decode_track(c).map(Some),
        other => Err(c.error(format!("bad presence flag {other}"))),
    }
}

fn decode_track(c: &mut Cursor) -> Result<Track> {
    let track_id = c.u32("track_id")?;
    let timescale = c.u32("timescale")?;
    let language = get_string(c)?;
    let end_dts = c.u64("end_dts")? as i64;
    let presentation_shift = c.u64("presentation_shift")? as i64;
    let decode_delay = c.u64("decode_delay")? as i64;
    let codec = match c.u8("codec kind")? {
        0 => Codec::Video(decode_video(c)?),
        1 => Codec::Audio(decode_audio(c)?),
        other => return Err(c.error(format!("bad codec kind {other}"))),
    };
    let count = c.count(SAMPLE_LEN, "sample count")?;
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        samples.push(Sample {
            offset: c.u64("offset")?,
            size: c.u32("size")?,
            cts_offset: c.i32("cts_offset")?,
        });
    }
    let run_count = c.count(RUN_LEN, "time run count")?;
    let mut runs = Vec::with_capacity(run_count);
    for _ in 0..run_count {
        runs.push(Run {
            first: c.u32("run first sample")?,
            duration: c.u32("run duration")?,
            dts: c.u64("run dts")? as i64,
        });
    }
    let times = Timeline::from_runs(runs, count, end_dts)
        .ok_or_else(|| c.error("decode time runs are not a timeline of the samples"))?;
    let sync = match c.u8("sync present")? {
        0 => None,
        _ => Some(get_u32s(c, "sync sample")?),
    };
    let random_access = get_u32s(c, "random access point")?;
    let nal_units = get_u32s(c, "NAL unit count")?;
    Ok(Track {
        track_id,
        timescale,
        language,
        codec,
        samples,
        times,
        sync,
        random_access,
        nal_units,
        presentation_shift,
        decode_delay,
    })
}

fn decode_video(c: &mut Cursor) -> Result<VideoConfig> {
    let codec = match c.u8("video codec")? {
        0 => VideoCodec::H264,
        1 => VideoCodec::Hevc,
        2 => VideoCodec::Av1,
        3 => VideoCodec::Vp9,
        other => return Err(c.error(format!("bad video codec {other}"))),
    };
    let nal_length_size = c.u8("nal_length_size")?;
    let width = c.u16("width")?;
    let height = c.u16("height")?;
    let codec_string = get_string(c)?;
    let n = c.count(4, "parameter set count")?;
    let mut parameter_sets = Vec::with_capacity(n);
    for _ in 0..n {
        parameter_sets.push(get_bytes(c)?.to_vec());
    }
    let config = get_bytes(c)?.to_vec();
    Ok(VideoConfig {
        config,
        codec,
        nal_length_size,
        parameter_sets,
        width,
        height,
        codec_string,
    })
}

fn decode_audio(c: &mut Cursor) -> Result<AudioConfig> {
    let codec = match c.u8("audio codec")? {
        0 => AudioCodec::Aac {
            profile: c.u8("profile")?,
            sampling_index: c.u8("sampling_index")?,
            channel_config: c.u8("channel_config")?,
        },
        1 => AudioCodec::Mp3,
        2 => AudioCodec::Ac3,
        3 => AudioCodec::Eac3,
        4 => AudioCodec::Opus,
        5 => AudioCodec::Flac,
        other => return Err(c.error(format!("bad audio codec {other}"))),
    };
    let sample_rate = c.u32("sample_rate")?;
    let channels = c.u16("channels")?;
    let codec_string = get_string(c)?;
    let config = get_bytes(c)?.to_vec();
    Ok(AudioConfig {
        config,
        codec,
        sample_rate,
        channels,
        codec_string,
    })
}

fn get_bytes<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8]> {
    let len = c.count(1, "length")?;
    c.bytes(len, "bytes")
}

fn get_string(c: &mut Cursor) -> Result<String> {
    let bytes = get_bytes(c)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| c.error("string is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_index(name: &str) -> MediaIndex {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        crate::packager::mp4::read_index(&std::fs::File::open(path).unwrap()).unwrap()
    }

    #[test]
    fn every_fixture_round_trips_and_truncations_fail_cleanly() {
        for name in [
            "h264-aac-bframes.mp4",
            "hevc-aac.mp4",
            "hevc-open-gop.mp4",
            "ac3.mp4",
            "eac3-only.mp4",
            "mp3-only.mp4",
            "aac-only.m4a",
        ] {
            let index = fixture_index(name);
            let bytes = encode(&index);
            assert_eq!(decode(&bytes).unwrap(), index, "{name}");
            for cut in [0, 3, 8, 17, bytes.len() / 2, bytes.len() - 1] {
                assert!(decode(&bytes[..cut]).is_err(), "{name} cut at {cut}");
            }
        }
    }

    fn video_config(index: &mut MediaIndex) -> &mut VideoConfig {
        match &mut index.video.as_mut().unwrap().codec {
            Codec::Video(v) => v,
            Codec::Audio(_) => unreachable!(),
        }
    }

    /// A cached index whose video says its NAL lengths take 0 bytes made
    /// the Annex B writer loop forever on the first segment.
    #[test]
    fn an_index_written_a_buffer_at_a_time_is_the_one_made_whole() {
        // Repeated until its samples fill several buffers of `encode_to`.
        let mut index = fixture_index("h264-aac-bframes.mp4");
        let video = index.video.as_mut().unwrap();
        let one = video.samples.clone();
        while video.samples.len() * SAMPLE_LEN < 3 * ENCODE_BUFFER {
            video.samples.extend_from_slice(&one);
        }
        /// Records the size of every write.
        struct Writes(Vec<u8>, Vec<usize>);
        impl std::io::Write for Writes {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.extend_from_slice(buf);
                self.1.push(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut out = Writes(Vec::new(), Vec::new());
        encode_to(&index, &mut out).unwrap();
        assert!(out.0 == encode(&index));
        assert!(out.1.len() > 3, "{:?}", out.1);
        assert!(
            out.1.iter().all(|&n| n <= ENCODE_BUFFER + 1024),
            "{:?}",
            out.1
        );
    }

    #[test]
    fn cached_index_with_nal_length_size_0_is_rejected() {
        let mut index = fixture_index("h264-aac-bframes.mp4");
        video_config(&mut index).nal_length_size = 0;
        let err = decode(&encode(&index)).unwrap_err().to_string();
        assert!(err.contains("NAL length size 0"), "{err}");
    }

    /// A cached index with a track of no samples made the planner panic.
    #[test]
    fn cached_index_with_an_empty_track_is_rejected() {
        let mut index = fixture_index("h264-aac-bframes.mp4");
        index.audio.as_mut().unwrap().samples.clear();
        index.audio.as_mut().unwrap().times = Timeline::default();
        index.audio.as_mut().unwrap().sync = None;
        let err = decode(&encode(&index)).unwrap_err().to_string();
        assert!(err.contains("no samples"), "{err}");
    }

    /// Every invariant the planner and muxer rely on is checked on decode.
    #[test]
    fn cached_index_breaking_any_invariant_is_rejected() {
        type Breakage = (&'static str, fn(&mut MediaIndex));
        let cases: &[Breakage] = &[
            ("lies past the end", |i| i.file_len -= 1),
            ("decode time goes back", |i| {
                let video = i.video.as_mut().unwrap();
                let mut times = Timeline::default();
                times.push(5, 512).unwrap();
                times.jump_to(-1);
                times.push(video.samples.len() as u32 - 5, 512).unwrap();
                video.times = times;
            }),
            ("timestamps out of range", |i| {
                i.audio.as_mut().unwrap().times.jump_to(i64::MAX)
            }),
            ("not a timeline of the samples", |i| {
                i.audio.as_mut().unwrap().samples.pop();
            }),
            ("sync sample past the last", |i| {
                i.video.as_mut().unwrap().sync = Some(vec![0, 100_000])
            }),
            ("sync sample list not ascending", |i| {
                i.video.as_mut().unwrap().sync = Some(vec![60, 0])
            }),
            ("decode delay", |i| {
                i.video.as_mut().unwrap().decode_delay = 7
            }),
            ("codec string", |i| {
                video_config(i).codec_string = "avc1\"\n#EXT".into()
            }),
            ("bad parameter sets", |i| {
                video_config(i).parameter_sets.push(Vec::new())
            }),
            ("timescale 0", |i| i.audio.as_mut().unwrap().timescale = 0),
            ("the video track has an audio codec", |i| {
                i.video = i.audio.clone()
            }),
            ("AAC configuration", |i| {
                if let Codec::Audio(a) = &mut i.audio.as_mut().unwrap().codec {
                    a.codec = AudioCodec::Aac {
                        profile: 1,
                        sampling_index: 15,
                        channel_config: 2,
                    };
                }
            }),
            ("more than the", |i| i.file_len = 1000),
            ("no video or audio track", |i| {
                i.video = None;
                i.audio = None;
            }),
        ];
        for (want, breakage) in cases {
            let mut index = fixture_index("h264-aac-bframes.mp4");
            breakage(&mut index);
            let err = decode(&encode(&index)).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
