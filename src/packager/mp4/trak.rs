//! Track boxes (ISO/IEC 14496-12 8.3-8.6): tkhd, edts/elst, mdhd, hdlr, stbl.

use super::cursor::Cursor;
use super::stbl::{self, SampleTables, TrackSamples};
use super::stsd;
use crate::packager::error::{FourCc, Result};
use crate::packager::index::Codec;

/// The edit list reduced to what a packager applies (14496-12 8.6.6):
/// leading empty edits delay the track; the first media edit says where in
/// the media presentation starts. Further edits are rare and ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Edit {
    /// Sum of the leading empty edits, in the movie timescale.
    pub empty_movie_units: u64,
    /// Media time where the first non-empty edit starts.
    pub media_time: i64,
    /// Length of that edit in the movie timescale; 0 when unknown.
    pub media_duration_movie_units: u64,
    /// More than one media edit was present.
    pub ignored_edits: bool,
}

pub struct Trak {
    pub track_id: u32,
    pub enabled: bool,
    pub handler: FourCc,
    pub timescale: u32,
    /// The codec, or why it cannot be packaged.
    pub codec: Result<Codec, String>,
    pub edit: Edit,
    pub samples: TrackSamples,
}

pub fn parse_trak(mut c: Cursor, file_len: u64) -> Result<Trak> {
    let mut tkhd = None;
    let mut edit = Edit::default();
    let mut mdia = None;
    for child in c.children() {
        let child = child?;
        match &child.fourcc.0 {
            b"tkhd" => tkhd = Some(parse_tkhd(child.body)?),
            b"edts" => edit = parse_edts(child.body)?,
            b"mdia" => mdia = Some(child.body),
            _ => {}
        }
    }
    let (track_id, enabled) = tkhd.ok_or_else(|| c.error("track has no 'tkhd'"))?;
    let mdia = mdia.ok_or_else(|| c.error("track has no 'mdia'"))?;
    let (timescale, handler, tables) = parse_mdia(mdia)?;
    let codec = match &tables.stsd {
        Some(stsd) => stsd::parse_stsd(stsd.clone())?,
        None => Err("track has no sample description".to_string()),
    };
    // A track left out is not expanded: an uncompressed audio track (QuickTime
    // `sowt`, `lpcm`) has a "sample" per PCM frame, hundreds of millions.
    let samples = match &codec {
        Ok(_) => stbl::expand(&tables, file_len)?,
        Err(_) => stbl::TrackSamples::default(),
    };
    Ok(Trak {
        track_id,
        enabled,
        handler,
        timescale,
        codec,
        edit,
        samples,
    })
}

fn parse_tkhd(mut c: Cursor) -> Result<(u32, bool)> {
    let (version, flags) = c.full_box()?;
    // creation and modification times
    c.skip(if version == 1 { 16 } else { 8 }, "tkhd times")?;
    let track_id = c.u32("track_ID")?;
    Ok((track_id, flags & 1 != 0))
}

fn parse_edts(mut c: Cursor) -> Result<Edit> {
    let mut edit = Edit::default();
    for child in c.children() {
        let mut child = child?;
        if &child.fourcc.0 != b"elst" {
            continue;
        }
        let e = &mut child.body;
        let (version, _) = e.full_box()?;
        let entry_len = if version == 1 { 20 } else { 12 };
        let count = e.count(entry_len, "elst entry count")?;
        let mut seen_media = false;
        for _ in 0..count {
            let duration = e.u32_or_u64(version, "segment_duration")?;
            let media_time = if version == 1 {
                e.u64("media_time")? as i64
            } else {
                i64::from(e.i32("media_time")?)
            };
            e.skip(4, "media_rate")?;
            if seen_media {
                edit.ignored_edits = true;
            } else if media_time == -1 {
                edit.empty_movie_units = edit.empty_movie_units.saturating_add(duration);
            } else if media_time < 0 {
                return Err(e.error(format!("negative edit media_time {media_time}")));
            } else {
                edit.media_time = media_time;
                edit.media_duration_movie_units = duration;
                seen_media = true;
            }
        }
    }
    Ok(edit)
}

fn parse_mdia<'a>(mut c: Cursor<'a>) -> Result<(u32, FourCc, SampleTables<'a>)> {
    let mut timescale = None;
    let mut handler = FourCc(*b"\0\0\0\0");
    let mut tables = SampleTables::default();
    for child in c.children() {
        let mut child = child?;
        match &child.fourcc.0 {
            b"mdhd" => {
                let b = &mut child.body;
                let (version, _) = b.full_box()?;
                b.skip(if version == 1 { 16 } else { 8 }, "mdhd times")?;
                let ts = b.u32("timescale")?;
                if ts == 0 {
                    return Err(b.error("timescale is 0"));
                }
                timescale = Some(ts);
            }
            b"hdlr" => {
                let b = &mut child.body;
                b.full_box()?;
                b.skip(4, "pre_defined")?;
                handler = b.fourcc_value("handler_type")?;
            }
            b"minf" => {
                for grandchild in child.body.children() {
                    let grandchild = grandchild?;
                    if &grandchild.fourcc.0 == b"stbl" {
                        tables = SampleTables::parse(grandchild.body)?;
                    }
                }
            }
            _ => {}
        }
    }
    let timescale = timescale.ok_or_else(|| c.error("media has no 'mdhd'"))?;
    Ok((timescale, handler, tables))
}
