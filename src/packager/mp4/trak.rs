//! Track boxes (ISO/IEC 14496-12 8.3-8.6): tkhd, edts/elst, mdhd, hdlr, and
//! where stbl's tables are. Walked in the file with positional reads: only
//! the small boxes are read whole; the sample tables are left where they
//! are until the track is chosen.

use super::cursor::Cursor;
use super::source::{next_child, Located, Window};
use super::stbl::SampleTables;
use super::stsd;
use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::Codec;

/// Largest box other than a sample table that we read whole (tkhd, mdhd,
/// hdlr, edts, stsd, mvhd, mvex). Real ones are under a few kilobytes; an
/// stsd with large parameter sets is still far below this.
pub const MAX_LEAF_BYTES: u64 = 4 << 20;

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
    /// ISO 639-2/T, from the mdhd.
    pub language: String,
    /// The codec, or why it cannot be packaged.
    pub codec: Result<Codec, String>,
    pub edit: Edit,
    pub tables: SampleTables,
    /// Samples the size table declares (the track's fragments may add more).
    pub declared_samples: u64,
    /// The type of its first sample entry (`avc1`, `mp4a`, `tx3g`...).
    pub sample_entry: Option<FourCc>,
    /// Tracks it names as its chapters (`tref`/`chap`, QuickTime).
    pub chapters: Vec<u32>,
}

/// Reads the body of a small box, refusing one larger than [`MAX_LEAF_BYTES`].
pub fn read_leaf(win: &mut Window, b: &Located) -> Result<Vec<u8>> {
    let len = b.body_len();
    if len > MAX_LEAF_BYTES {
        return Err(Error::corrupt(
            b.fourcc,
            b.start,
            format!("{len}-byte box is too large"),
        ));
    }
    win.read_vec(b.body, len as usize, b.fourcc)
}

pub fn parse_trak(win: &mut Window, trak: &Located) -> Result<Trak> {
    let mut tkhd = None;
    let mut edit = Edit::default();
    let mut mdia = None;
    let mut chapters = Vec::new();
    let mut pos = trak.body;
    while let Some(child) = next_child(win, &mut pos, trak.end, trak.fourcc)? {
        match &child.fourcc.0 {
            b"tkhd" => tkhd = Some(parse_tkhd(leaf_cursor(&read_leaf(win, &child)?, &child))?),
            b"edts" => edit = parse_edts(leaf_cursor(&read_leaf(win, &child)?, &child))?,
            b"tref" => chapters = parse_chapters(leaf_cursor(&read_leaf(win, &child)?, &child))?,
            b"mdia" => mdia = Some(child),
            _ => {}
        }
    }
    let missing = |what: &str| Error::corrupt(trak.fourcc, trak.start, what);
    let (track_id, enabled) = tkhd.ok_or_else(|| missing("track has no 'tkhd'"))?;
    let mdia = mdia.ok_or_else(|| missing("track has no 'mdia'"))?;
    let media = parse_mdia(win, &mdia)?;
    let codec = match &media.stsd {
        Some((body, b)) => stsd::parse_stsd(leaf_cursor(body, b))?,
        None => Err("track has no sample description".to_string()),
    };
    let declared_samples = media.tables.declared_samples(win)?;
    // FullBox header and entry_count, then the first entry's size and type.
    let sample_entry = media
        .stsd
        .as_ref()
        .and_then(|(body, _)| body.get(12..16))
        .map(|t| FourCc(t.try_into().expect("4 bytes")));
    Ok(Trak {
        track_id,
        enabled,
        handler: media.handler,
        timescale: media.timescale,
        language: media.language,
        codec,
        edit,
        tables: media.tables,
        declared_samples,
        sample_entry,
        chapters,
    })
}

/// The track ids of a `tref`'s `chap` references (QuickTime: the text
/// track that holds this track's chapter names).
fn parse_chapters(mut c: Cursor) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for child in c.children() {
        let mut child = child?;
        if &child.fourcc.0 == b"chap" {
            while child.body.remaining() >= 4 && ids.len() < MAX_CHAPTER_TRACKS {
                ids.push(child.body.u32("chap track_ID")?);
            }
        }
    }
    Ok(ids)
}

/// Chapter track references kept per track, at most.
const MAX_CHAPTER_TRACKS: usize = 16;

/// The ISO 639-2/T code packed in an mdhd (14496-12 8.4.2.3: a pad bit and
/// three 5-bit letters, each `letter - 0x60`); `und` for anything else.
fn language(packed: u16) -> String {
    let letters: Vec<u8> = [10, 5, 0]
        .iter()
        .map(|shift| ((packed >> shift) & 0x1f) as u8 + 0x60)
        .collect();
    if letters.iter().all(u8::is_ascii_lowercase) {
        String::from_utf8(letters).expect("ASCII")
    } else {
        "und".to_string()
    }
}

pub fn leaf_cursor<'a>(body: &'a [u8], b: &Located) -> Cursor<'a> {
    Cursor::new(body, b.body, b.fourcc)
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

struct Media {
    timescale: u32,
    language: String,
    handler: FourCc,
    /// The stsd's body and where it is.
    stsd: Option<(Vec<u8>, Located)>,
    tables: SampleTables,
}

fn parse_mdia(win: &mut Window, mdia: &Located) -> Result<Media> {
    let mut timescale = None;
    let mut media = Media {
        timescale: 0,
        language: "und".to_string(),
        handler: FourCc(*b"\0\0\0\0"),
        stsd: None,
        tables: SampleTables::default(),
    };
    let mut pos = mdia.body;
    while let Some(child) = next_child(win, &mut pos, mdia.end, mdia.fourcc)? {
        match &child.fourcc.0 {
            b"mdhd" => {
                let body = read_leaf(win, &child)?;
                let mut b = leaf_cursor(&body, &child);
                let (version, _) = b.full_box()?;
                b.skip(if version == 1 { 16 } else { 8 }, "mdhd times")?;
                let ts = b.u32("timescale")?;
                if ts == 0 {
                    return Err(b.error("timescale is 0"));
                }
                timescale = Some(ts);
                b.skip(if version == 1 { 8 } else { 4 }, "mdhd duration")?;
                media.language = language(b.u16("language")?);
            }
            b"hdlr" => {
                let body = read_leaf(win, &child)?;
                let mut b = leaf_cursor(&body, &child);
                b.full_box()?;
                b.skip(4, "pre_defined")?;
                media.handler = b.fourcc_value("handler_type")?;
            }
            b"minf" => {
                let mut at = child.body;
                while let Some(stbl) = next_child(win, &mut at, child.end, child.fourcc)? {
                    if &stbl.fourcc.0 == b"stbl" {
                        read_stbl(win, &stbl, &mut media)?;
                    }
                }
            }
            _ => {}
        }
    }
    media.timescale =
        timescale.ok_or_else(|| Error::corrupt(mdia.fourcc, mdia.start, "media has no 'mdhd'"))?;
    Ok(media)
}

/// Reads the stsd and notes where the tables are; a later stbl replaces
/// an earlier one, as before.
fn read_stbl(win: &mut Window, stbl: &Located, media: &mut Media) -> Result<()> {
    media.tables = SampleTables::default();
    media.stsd = None;
    let mut pos = stbl.body;
    while let Some(child) = next_child(win, &mut pos, stbl.end, stbl.fourcc)? {
        if &child.fourcc.0 == b"stsd" {
            media.stsd = Some((read_leaf(win, &child)?, child));
        } else {
            media.tables.record(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mdhd_languages_unpack_and_anything_else_is_undetermined() {
        assert_eq!(super::language(0x15c7), "eng");
        assert_eq!(super::language(0x55c4), "und");
        assert_eq!(super::language(0), "und");
        assert_eq!(super::language(0x7fff), "und");
    }
}
