//! The MP4/MOV reader (ISO/IEC 14496-12, QuickTime File Format): reads the
//! top-level boxes' headers, the `moov` and any `moof`, never the media data,
//! and turns them into a [`MediaIndex`].

mod aac;
pub(crate) mod cursor;
mod fragment;
mod stbl;
mod stsd;
mod trak;

use std::fs::File;
use std::os::unix::fs::FileExt;

use cursor::Cursor;
use fragment::{FragmentTarget, Trex};
use stbl::TrackSamples;
use trak::Trak;

use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{rescale, Codec, MediaIndex, Track};

/// Largest `moov` or `moof` we read into memory. A 10-hour file's moov is
/// tens of megabytes; anything above this is hostile.
const MAX_HEADER_BOX: u64 = 256 << 20;

/// Boxes an MP4 or QuickTime file may begin with; anything else is not one.
const FIRST_BOXES: [&[u8; 4]; 11] = [
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"sidx",
    b"pdin",
];

/// Reads the index of an MP4 file.
pub fn read_index(file: &File) -> Result<MediaIndex> {
    let file_len = file.metadata()?.len();
    parse(&FileSource { file }, file_len)
}

/// Reads the index of an MP4 file held in memory (tests, fuzzing).
pub fn read_index_from_bytes(data: &[u8]) -> Result<MediaIndex> {
    parse(&data, data.len() as u64)
}

/// Positional reads, from a file or a buffer.
trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
}

struct FileSource<'f> {
    file: &'f File,
}

impl ReadAt for FileSource<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        Ok(self.file.read_exact_at(buf, offset)?)
    }
}

impl ReadAt for &[u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let start = offset as usize;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

struct BoxHeader {
    fourcc: FourCc,
    start: u64,
    header_len: u64,
    size: u64,
}

fn read_header(src: &dyn ReadAt, pos: u64, file_len: u64) -> Result<Option<BoxHeader>> {
    let left = file_len - pos;
    let mut buf = [0u8; 16];
    let avail = left.min(16) as usize;
    src.read_at(&mut buf[..avail], pos)?;
    if left < 8 {
        if buf[..avail].iter().all(|&b| b == 0) {
            return Ok(None);
        }
        return Err(Error::corrupt(
            FourCc(*b"\0\0\0\0"),
            pos,
            "truncated box header",
        ));
    }
    let fourcc = FourCc(buf[4..8].try_into().expect("4 bytes"));
    if pos == 0 && !FIRST_BOXES.contains(&&fourcc.0) {
        return Err(Error::Unsupported(
            "not an MP4 or MOV file (no box at its start)".into(),
        ));
    }
    let (header_len, size) = match u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) {
        0 => (8, left),
        1 if left < 16 => return Err(Error::corrupt(fourcc, pos, "truncated 64-bit box header")),
        1 => (
            16,
            u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes")),
        ),
        n => (8, u64::from(n)),
    };
    if size < header_len {
        return Err(Error::corrupt(fourcc, pos, format!("bad box size {size}")));
    }
    Ok(Some(BoxHeader {
        fourcc,
        start: pos,
        header_len,
        size,
    }))
}

fn read_body(src: &dyn ReadAt, h: &BoxHeader) -> Result<Vec<u8>> {
    let len = h.size - h.header_len;
    if len > MAX_HEADER_BOX {
        return Err(Error::corrupt(
            h.fourcc,
            h.start,
            format!("{len}-byte box is too large"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    src.read_at(&mut body, h.start + h.header_len)?;
    Ok(body)
}

struct Movie {
    timescale: u32,
    traks: Vec<Trak>,
    trex: Vec<Trex>,
    fragmented: bool,
}

fn parse(src: &dyn ReadAt, file_len: u64) -> Result<MediaIndex> {
    let mut movie: Option<Movie> = None;
    let mut pos = 0u64;
    while pos < file_len {
        let Some(h) = read_header(src, pos, file_len)? else {
            break;
        };
        let end = pos.saturating_add(h.size);
        if end > file_len {
            // Truncated media data or padding is left to the sample checks;
            // a truncated header box is fatal.
            if !matches!(&h.fourcc.0, b"mdat" | b"free" | b"skip") {
                return Err(Error::corrupt(
                    h.fourcc,
                    pos,
                    format!(
                        "box of {} bytes overruns the end of the file by {} bytes",
                        h.size,
                        end - file_len
                    ),
                ));
            }
            tracing::debug!(
                "{} at {pos} overruns the file by {} bytes",
                h.fourcc,
                end - file_len
            );
        }
        match &h.fourcc.0 {
            b"moov" if movie.is_some() => {
                return Err(Error::corrupt(h.fourcc, pos, "second 'moov'"));
            }
            b"moov" => {
                let body = read_body(src, &h)?;
                let m = parse_moov(Cursor::new(&body, pos + h.header_len, h.fourcc), file_len)?;
                let fragmented = m.fragmented;
                movie = Some(m);
                if !fragmented {
                    break;
                }
            }
            b"moof" => {
                let m = movie
                    .as_mut()
                    .ok_or_else(|| Error::corrupt(h.fourcc, pos, "'moof' before 'moov'"))?;
                let body = read_body(src, &h)?;
                let mut targets: Vec<FragmentTarget> = m
                    .traks
                    .iter_mut()
                    .map(|t| FragmentTarget {
                        track_id: t.track_id,
                        trex: m
                            .trex
                            .iter()
                            .copied()
                            .find(|x| x.track_id == t.track_id)
                            .unwrap_or_default(),
                        samples: &mut t.samples,
                        keep: t.codec.is_ok(),
                    })
                    .collect();
                let c = Cursor::new(&body, pos + h.header_len, h.fourcc);
                fragment::parse_moof(c, pos, &mut targets)?;
            }
            _ => {}
        }
        pos = end;
    }
    let movie = movie
        .ok_or_else(|| Error::corrupt(FourCc(*b"moov"), 0, "no 'moov' box: not an MP4 file"))?;
    select_tracks(movie, file_len)
}

fn parse_moov(mut c: Cursor, file_len: u64) -> Result<Movie> {
    let mut movie = Movie {
        timescale: 0,
        traks: Vec::new(),
        trex: Vec::new(),
        fragmented: false,
    };
    for child in c.children() {
        let mut child = child?;
        match &child.fourcc.0 {
            b"mvhd" => {
                let b = &mut child.body;
                let (version, _) = b.full_box()?;
                b.skip(if version == 1 { 16 } else { 8 }, "mvhd times")?;
                movie.timescale = b.u32("timescale")?;
            }
            b"trak" => movie.traks.push(trak::parse_trak(child.body, file_len)?),
            b"mvex" => {
                movie.fragmented = true;
                for grandchild in child.body.children() {
                    let grandchild = grandchild?;
                    if &grandchild.fourcc.0 == b"trex" {
                        movie.trex.push(fragment::parse_trex(grandchild.body)?);
                    }
                }
            }
            _ => {}
        }
    }
    if movie.timescale == 0 {
        return Err(c.error("movie has no 'mvhd' or its timescale is 0"));
    }
    Ok(movie)
}

/// Picks the first enabled video and audio tracks we can carry (the first
/// carriable one when none is enabled) and explains why others are left out.
fn select_tracks(movie: Movie, file_len: u64) -> Result<MediaIndex> {
    let mut index = MediaIndex {
        file_len,
        video: None,
        audio: None,
        skipped: Vec::new(),
    };
    let mut candidates: Vec<Trak> = Vec::new();
    for t in movie.traks {
        let why = match &t.codec {
            Err(why) => Some(why.clone()),
            Ok(_) if t.samples.samples.is_empty() => Some("it has no samples".to_string()),
            Ok(_) => None,
        };
        match why {
            Some(why) => index.skipped.push(format!(
                "track {} ({}) left out: {why}",
                t.track_id, t.handler
            )),
            None => candidates.push(t),
        }
    }
    // Enabled tracks first, keeping file order otherwise.
    candidates.sort_by_key(|t| !t.enabled);
    for t in candidates {
        let is_video = matches!(t.codec, Ok(Codec::Video(_)));
        let slot = if is_video {
            &mut index.video
        } else {
            &mut index.audio
        };
        if slot.is_some() {
            index.skipped.push(format!(
                "track {} ({}) left out: only the first {} track is packaged",
                t.track_id,
                t.handler,
                if is_video { "video" } else { "audio" }
            ));
            continue;
        }
        *slot = Some(finish_track(
            t,
            movie.timescale,
            movie.fragmented,
            file_len,
        )?);
    }
    if index.video.is_none() && index.audio.is_none() {
        let mut why = "no audio or video track that MPEG-TS can carry".to_string();
        for s in &index.skipped {
            why.push_str("; ");
            why.push_str(s);
        }
        return Err(Error::Unsupported(why));
    }
    Ok(index)
}

/// Drops samples at the end (in decode order) that are presented at or
/// after `end`, where the edit list ends the presentation. Only a suffix is
/// dropped, so no kept frame loses a reference; one sample always stays.
fn trim_after(samples: &mut TrackSamples, end: i64) {
    let list = &mut samples.samples;
    while list.len() > 1
        && list
            .last()
            .is_some_and(|s| s.dts + i64::from(s.cts_offset) >= end)
    {
        samples.end_dts = list.pop().expect("not empty").dts;
    }
    if let Some(sync) = &mut samples.sync {
        sync.retain(|&i| (i as usize) < list.len());
    }
}

/// Timestamps beyond this (ten years at 90 kHz) are taken as corrupt, so
/// that timestamp arithmetic never overflows.
const MAX_TIMESTAMP_90K: i64 = 90_000 * 86_400 * 3_660;

/// Decode times must not go backwards and every time must be in range.
fn check_timeline(samples: &TrackSamples, track_id: u32, timescale: u32, shift: i64) -> Result<()> {
    let limit = rescale(MAX_TIMESTAMP_90K, 90_000, timescale);
    let corrupt =
        |what: String| Error::corrupt(FourCc(*b"trak"), 0, format!("track {track_id}: {what}"));
    if let Some(w) = samples.samples.windows(2).find(|w| w[1].dts < w[0].dts) {
        return Err(corrupt(format!(
            "decode time goes back from {} to {}",
            w[0].dts, w[1].dts
        )));
    }
    let first = samples.samples.first().map_or(0, |s| s.dts);
    if [first, samples.end_dts, shift]
        .iter()
        .any(|t| t.abs() > limit)
        || samples.end_dts < first
    {
        return Err(corrupt("timestamps out of range".into()));
    }
    Ok(())
}

fn finish_track(t: Trak, movie_timescale: u32, fragmented: bool, file_len: u64) -> Result<Track> {
    let mut samples = t.samples;
    // In a fragmented file the edit's length may cover only the moov's
    // samples (often none), so it only trims complete files.
    if !fragmented && t.edit.media_duration_movie_units > 0 {
        let duration = i64::try_from(t.edit.media_duration_movie_units).unwrap_or(i64::MAX / 2);
        let end = t
            .edit
            .media_time
            .saturating_add(rescale(duration, movie_timescale, t.timescale));
        trim_after(&mut samples, end);
    }
    for (i, s) in samples.samples.iter().enumerate() {
        if s.offset.saturating_add(u64::from(s.size)) > file_len {
            return Err(Error::corrupt(
                FourCc(*b"mdat"),
                s.offset,
                format!(
                    "sample {} of track {} ({} bytes) lies past the end of the \
                     {file_len}-byte file: the file is truncated",
                    i + 1,
                    t.track_id,
                    s.size
                ),
            ));
        }
    }
    if t.edit.ignored_edits {
        tracing::warn!(
            "track {}: only the first edit of its edit list is applied",
            t.track_id
        );
    }
    let empty = rescale(
        i64::try_from(t.edit.empty_movie_units).unwrap_or(i64::MAX / 2),
        movie_timescale,
        t.timescale,
    );
    check_timeline(&samples, t.track_id, t.timescale, empty - t.edit.media_time)?;
    let min_cts = samples
        .samples
        .iter()
        .map(|s| s.cts_offset)
        .min()
        .unwrap_or(0);
    Ok(Track {
        track_id: t.track_id,
        timescale: t.timescale,
        codec: t.codec.expect("selected tracks have a codec"),
        samples: samples.samples,
        sync: samples.sync,
        end_dts: samples.end_dts,
        presentation_shift: empty - t.edit.media_time,
        decode_delay: i64::from(min_cts.min(0)).abs(),
    })
}
