//! Subtitle tracks inside a file, as cues: 3GPP timed text (`tx3g`, 3GPP
//! TS 26.245 5.17) and QuickTime text (`text`), whose samples are a 16-bit
//! length and the text; WebVTT in ISO/IEC 14496-30 (`wvtt`), whose samples
//! are `vttc` boxes of a cue's payload (`payl`), settings (`sttg`) and id
//! (`iden`), or a `vtte` for no cue. Style records after a timed-text
//! sample's text are left out: a WebVTT cue gets the text alone.

use super::cursor::Cursor;
use super::fragment::{self, FragmentTarget};
use super::source::{ReadAt, Window, WALK_BLOCK};
use super::stbl::{self, TrackSamples};
use super::trak::Trak;
use super::{moov, read_header, read_moof_into};
use crate::packager::error::{Error, FourCc, Result};
use crate::packager::subtitles::{webvtt_text, Cue, Cues, MAX_CUES};

/// Samples of a file's subtitle tracks we read, at most (a feature film
/// has a few thousand cues a language).
const MAX_TEXT_SAMPLES: u64 = MAX_CUES as u64;
/// A sample longer than this is no subtitle, and is skipped ...
const MAX_TEXT_SAMPLE_BYTES: u32 = 64 << 10;
/// ... and the samples of all tracks read add up to this much, at most.
const MAX_TEXT_BYTES: u64 = 16 << 20;

/// A subtitle track of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextTrack {
    pub track_id: u32,
    /// ISO 639-2/T from the track's mdhd (`und` when it says none).
    pub language: String,
    pub cues: Cues,
}

/// The subtitle tracks of the MP4 file of `file_len` bytes that `src`
/// reads, with the samples its movie fragments add to them; none when it
/// has none. Chapter tracks (QuickTime `tref`/`chap`) are not read.
pub fn read_text_tracks(src: &dyn ReadAt, file_len: u64) -> Result<Vec<TextTrack>> {
    let mut win = Window::new(src, file_len, WALK_BLOCK);
    let mut pos = 0u64;
    while pos < file_len {
        let Some(h) = read_header(&mut win, pos, file_len)? else {
            break;
        };
        if &h.fourcc.0 == b"moov" {
            let movie = moov::read_moov(&mut win, &h)?;
            let mut budget = Budget {
                samples: MAX_TEXT_SAMPLES,
                bytes: MAX_TEXT_BYTES,
            };
            let mut samples = Vec::with_capacity(movie.text.len());
            for t in &movie.text {
                let expanded = stbl::expand(&t.tables, src, file_len, budget.samples)?;
                budget.samples -= expanded.samples.len() as u64;
                samples.push(expanded);
            }
            if movie.fragmented {
                read_fragments(&mut win, h.end, &movie, &mut samples, &mut budget)?;
            }
            // A track with no sample in the moov nor in any fragment is none.
            return movie
                .text
                .iter()
                .zip(&samples)
                .filter(|(_, s)| !s.samples.is_empty())
                .map(|(t, s)| read_track(t, s, movie.timescale, src, &mut budget))
                .collect();
        }
        pos = h.end;
    }
    Ok(Vec::new())
}

/// What the tracks of a file may still read.
struct Budget {
    samples: u64,
    bytes: u64,
}

/// Adds to `samples` (one per text track of `movie`) the samples of the
/// movie fragments after `from`, within the budget's samples.
fn read_fragments(
    win: &mut Window,
    from: u64,
    movie: &moov::Movie,
    samples: &mut [TrackSamples],
    budget: &mut Budget,
) -> Result<()> {
    let file_len = win.file_len();
    let mut pos = from;
    while pos < file_len {
        let Some(h) = read_header(win, pos, file_len)? else {
            break;
        };
        if &h.fourcc.0 == b"moof" {
            let mut targets: Vec<FragmentTarget> = movie
                .text
                .iter()
                .zip(samples.iter_mut())
                .map(|(t, samples)| FragmentTarget {
                    track_id: t.track_id,
                    samples,
                })
                .collect();
            let mut left = fragment::Budget {
                samples_left: budget.samples,
                samples_walked: 0,
            };
            read_moof_into(win, &h, &movie.trex, &mut targets, &mut left)?;
            budget.samples = left.samples_left;
        }
        pos = h.end;
    }
    Ok(())
}

fn read_track(
    t: &Trak,
    samples: &TrackSamples,
    movie_timescale: u32,
    src: &dyn ReadAt,
    budget: &mut Budget,
) -> Result<TextTrack> {
    let entry = t.sample_entry.unwrap_or(FourCc(*b"tx3g"));
    // Presentation times: the edit's media time starts at 0, after any
    // leading empty edit.
    let empty_ms = i128::from(t.edit.empty_movie_units) * 1000 / i128::from(movie_timescale.max(1));
    let delay_ms = i64::try_from(empty_ms)
        .unwrap_or(i64::MAX)
        .saturating_sub(ms(t.edit.media_time, t.timescale));
    let mut cues = Cues::default();
    let all = &samples.samples;
    for (i, s) in all.iter().enumerate() {
        let dts = samples.times.dts(i);
        let end_dts = dts + samples.times.duration(i);
        let at = |dts: i64| ms(dts.saturating_add(i64::from(s.cts_offset)), t.timescale);
        let (start_ms, end_ms) = (
            at(dts).saturating_add(delay_ms),
            at(end_dts).saturating_add(delay_ms),
        );
        if s.size == 0 || end_ms <= start_ms {
            continue;
        }
        if s.size > MAX_TEXT_SAMPLE_BYTES || u64::from(s.size) > budget.bytes {
            cues.skipped += 1;
            continue;
        }
        budget.bytes -= u64::from(s.size);
        let mut bytes = vec![0; s.size as usize];
        src.read_at(&mut bytes, s.offset)?;
        let read = match &entry.0 {
            b"wvtt" => wvtt_cues(&bytes, s.offset, start_ms, end_ms, &mut cues.cues),
            _ => timed_text_cue(&bytes, start_ms, end_ms).map(|cue| cues.cues.extend(cue)),
        };
        if read.is_err() {
            cues.skipped += 1;
        }
    }
    cues.cues.sort_by_key(|c| c.start_ms);
    Ok(TextTrack {
        track_id: t.track_id,
        language: t.language.clone(),
        cues,
    })
}

/// `t` in `timescale` units, in milliseconds.
fn ms(t: i64, timescale: u32) -> i64 {
    let ms = i128::from(t) * 1000 / i128::from(timescale.max(1));
    ms.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A timed-text sample's cue: its text (UTF-8, or UTF-16 after a byte
/// order mark), none when it is empty (a gap between cues).
fn timed_text_cue(sample: &[u8], start_ms: i64, end_ms: i64) -> Result<Option<Cue>> {
    let bad = |what: &str| Error::corrupt(FourCc(*b"tx3g"), 0, what);
    let len = sample
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| bad("sample shorter than its text length"))?;
    let text = sample
        .get(2..2 + len)
        .ok_or_else(|| bad("text longer than its sample"))?;
    let text = match text {
        [0xfe, 0xff, rest @ ..] => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|u| u16::from_be_bytes([u[0], u[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(text).into_owned(),
    };
    let text = webvtt_text(&text.replace("\r\n", "\n").replace('\r', "\n"));
    Ok((!text.is_empty()).then(|| Cue {
        id: None,
        start_ms,
        end_ms,
        settings: String::new(),
        text,
    }))
}

/// The cues of a WebVTT sample: one per `vttc`, all shown for the
/// sample's time.
fn wvtt_cues(
    sample: &[u8],
    offset: u64,
    start_ms: i64,
    end_ms: i64,
    out: &mut Vec<Cue>,
) -> Result<()> {
    for vttc in Cursor::new(sample, offset, FourCc(*b"wvtt")).children() {
        let mut vttc = vttc?;
        if &vttc.fourcc.0 != b"vttc" {
            continue;
        }
        let mut cue = Cue {
            id: None,
            start_ms,
            end_ms,
            settings: String::new(),
            text: String::new(),
        };
        for part in vttc.body.children() {
            let mut part = part?;
            let text = String::from_utf8_lossy(part.body.rest()).trim().to_string();
            match &part.fourcc.0 {
                b"payl" => cue.text = text,
                b"sttg" => cue.settings = text,
                b"iden" if !text.is_empty() && !text.contains("-->") => cue.id = Some(text),
                _ => {}
            }
        }
        // A blank line would end the cue early.
        cue.text = cue
            .text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        if !cue.text.is_empty() && out.len() < MAX_CUES {
            out.push(cue);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_text_is_escaped_and_empty_samples_are_gaps() {
        let mut sample = vec![0, 11];
        sample.extend_from_slice(b"a <b> & c\r\n");
        sample.extend_from_slice(b"\0\0\0\x0astyl\0\0"); // a style record after it
        let cue = timed_text_cue(&sample, 1000, 2000).unwrap().unwrap();
        assert_eq!(cue.text, "a &lt;b&gt; &amp; c");
        assert_eq!(timed_text_cue(&[0, 0], 0, 1).unwrap(), None);
        assert!(timed_text_cue(&[0, 9, b'x'], 0, 1).is_err());
        assert!(timed_text_cue(&[0], 0, 1).is_err());
        let utf16 = [0, 6, 0xfe, 0xff, 0, b'h', 0, b'i'];
        assert_eq!(timed_text_cue(&utf16, 0, 1).unwrap().unwrap().text, "hi");
    }

    /// ffmpeg's mov_text tracks (tests/fixtures/make.sh).
    #[test]
    fn the_tx3g_tracks_of_a_fixture_read_as_their_cues() {
        let data: &[u8] = include_bytes!("../../../tests/fixtures/h264-aac-tx3g.mp4");
        let tracks = read_text_tracks(&data, data.len() as u64).unwrap();
        type Summary<'a> = Vec<(String, Vec<(i64, i64, &'a str)>)>;
        let summary: Summary = tracks
            .iter()
            .map(|t| {
                let cues = t.cues.cues.iter();
                let cues = cues.map(|c| (c.start_ms, c.end_ms, c.text.as_str()));
                (t.language.clone(), cues.collect())
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "eng".to_string(),
                    vec![
                        (1000, 2000, "One"),
                        (3000, 4500, "Two &amp; 3 &lt; 4"),
                        (5500, 6500, "Across the cut"),
                        (7000, 7500, "Four"),
                        (8000, 9500, "Five\non two lines"),
                    ]
                ),
                (
                    "fra".to_string(),
                    vec![(2000, 3000, "Un"), (8000, 9000, "Deux")]
                ),
            ]
        );
        // The media are packaged as before, the text tracks not among them.
        let index = crate::packager::mp4::read_index_from_bytes(data).unwrap();
        assert!(index.video.is_some() && index.audio.is_some());
        assert!(index.skipped.is_empty(), "{:?}", index.skipped);
    }

    /// The same tracks muxed as fMP4 (tests/fixtures/make.sh): the moov's
    /// tables are empty and every sample is in the fragments, where each
    /// moof has a traf per text track with its own data offset and decode
    /// time. ffmpeg dropped the edit lists on the way, so every cue comes
    /// 66.7 ms later than in the file they were copied from.
    #[test]
    fn text_tracks_in_fragments_read_as_the_unfragmented_ones_do() {
        let plain: &[u8] = include_bytes!("../../../tests/fixtures/h264-aac-tx3g.mp4");
        let fragmented: &[u8] =
            include_bytes!("../../../tests/fixtures/h264-aac-tx3g-fragmented.mp4");
        let plain = read_text_tracks(&plain, plain.len() as u64).unwrap();
        let mut got = read_text_tracks(&fragmented, fragmented.len() as u64).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        for (got, plain) in got.iter_mut().zip(&plain) {
            assert_eq!(got.language, plain.language);
            assert_eq!(got.cues.skipped, 0);
            for cue in &mut got.cues.cues {
                cue.start_ms -= 66;
                cue.end_ms -= 66;
            }
            assert_eq!(got.cues.cues, plain.cues.cues, "{}", got.language);
        }
        // The media are packaged from the same fragments.
        let index = crate::packager::mp4::read_index_from_bytes(fragmented).unwrap();
        assert!(index.video.is_some() && index.audio.is_some());
        assert!(index.skipped.is_empty(), "{:?}", index.skipped);
    }

    /// A trun of a text track may declare more samples than a file may
    /// have cues: the tracks are not read, and nothing more is allocated.
    #[test]
    fn a_text_trun_past_the_budget_is_an_error() {
        let data: &[u8] = include_bytes!("../../../tests/fixtures/h264-aac-tx3g-fragmented.mp4");
        let mut data = data.to_vec();
        // A moof whose one traf (track 3, base = moof) has a trun of 2^24
        // samples of the default size and duration.
        let boxed = |fourcc: &[u8; 4], body: &[u8]| {
            [&(8 + body.len() as u32).to_be_bytes()[..], fourcc, body].concat()
        };
        let tfhd = boxed(b"tfhd", &[&[0, 2, 0, 0][..], &3u32.to_be_bytes()].concat());
        let trun = boxed(
            b"trun",
            &[&[0u8; 4][..], &(1u32 << 24).to_be_bytes()].concat(),
        );
        data.extend(boxed(b"moof", &boxed(b"traf", &[tfhd, trun].concat())));
        let err = read_text_tracks(&data.as_slice(), data.len() as u64).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }

    /// Bytes of the fixtures' moov (at the start: faststart) and, in the
    /// fragmented one, of its moofs changed one at a time: cues or an
    /// error, never a panic.
    #[test]
    fn changed_moov_and_moof_bytes_never_panic() {
        let plain: &[u8] = include_bytes!("../../../tests/fixtures/h264-aac-tx3g.mp4");
        let fragmented: &[u8] =
            include_bytes!("../../../tests/fixtures/h264-aac-tx3g-fragmented.mp4");
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for data in [plain, fragmented] {
            let boxes = header_boxes(data);
            let len: usize = boxes.iter().map(|r| r.len()).sum();
            for _ in 0..3000 {
                let mut changed = data.to_vec();
                // A byte of a moov or moof, not of the media data.
                let mut at = (next() % len as u64) as usize;
                let range = boxes.iter().find(|r| {
                    let inside = at < r.len();
                    if !inside {
                        at -= r.len();
                    }
                    inside
                });
                let at = range.expect("within the boxes").start + at;
                changed[at] = next() as u8;
                if let Ok(tracks) = read_text_tracks(&changed.as_slice(), changed.len() as u64) {
                    let cues = tracks.iter().flat_map(|t| &t.cues.cues);
                    assert!(cues.clone().all(|c| c.end_ms > c.start_ms));
                }
            }
        }
    }

    /// Where the top-level moov and moof boxes of `data` are.
    fn header_boxes(data: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut boxes = Vec::new();
        let mut pos = 0;
        while pos + 8 <= data.len() {
            let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            if matches!(&data[pos + 4..pos + 8], b"moov" | b"moof") {
                boxes.push(pos..pos + size);
            }
            pos += size.max(8);
        }
        assert!(!boxes.is_empty());
        boxes
    }

    #[test]
    fn webvtt_samples_give_a_cue_per_vttc() {
        let boxed = |fourcc: &[u8; 4], body: &[u8]| {
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(fourcc);
            b.extend_from_slice(body);
            b
        };
        let mut one = boxed(b"iden", b"c1");
        one.extend(boxed(b"sttg", b"line:0"));
        one.extend(boxed(b"payl", b"Hello\n\nthere"));
        let mut sample = boxed(b"vttc", &one);
        sample.extend(boxed(b"vttc", &boxed(b"payl", b"Second")));
        let mut cues = Vec::new();
        wvtt_cues(&sample, 0, 5, 9, &mut cues).unwrap();
        assert_eq!(cues.len(), 2);
        assert_eq!(cues[0].id.as_deref(), Some("c1"));
        assert_eq!(cues[0].settings, "line:0");
        assert_eq!(cues[0].text, "Hello\nthere");
        assert_eq!((cues[1].start_ms, cues[1].end_ms), (5, 9));
        let mut none = Vec::new();
        wvtt_cues(&boxed(b"vtte", b""), 0, 0, 1, &mut none).unwrap();
        assert!(none.is_empty());
    }
}
