//! Movie fragments (ISO/IEC 14496-12 8.8): mvex/trex defaults and
//! moof/traf/tfhd/tfdt/trun, appended to the samples of the `moov`.

use super::cursor::Cursor;
use super::stbl::TrackSamples;
use crate::packager::error::Result;
use crate::packager::index::{Sample, MAX_TRACK_SAMPLES};

/// Track extends defaults (8.8.3).
#[derive(Clone, Copy, Default)]
pub struct Trex {
    pub track_id: u32,
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
}

pub fn parse_trex(mut c: Cursor) -> Result<Trex> {
    c.full_box()?;
    let track_id = c.u32("track_ID")?;
    c.skip(4, "default_sample_description_index")?;
    Ok(Trex {
        track_id,
        duration: c.u32("default_sample_duration")?,
        size: c.u32("default_sample_size")?,
        flags: c.u32("default_sample_flags")?,
    })
}

/// A track that fragments may add samples to.
pub struct FragmentTarget<'t> {
    pub track_id: u32,
    pub trex: Trex,
    pub samples: &'t mut TrackSamples,
    /// False for a track that is not packaged: its samples are only
    /// walked, to find where the next traf's data starts.
    pub keep: bool,
}

/// Most samples one trun without per-sample fields may declare.
const MAX_IMPLICIT_SAMPLES: usize = 1 << 20;

/// sample_is_non_sync_sample in the sample flags (8.8.3.1).
const NON_SYNC: u32 = 0x0001_0000;

/// Reads one moof whose box starts at file offset `moof_start`.
pub fn parse_moof(mut c: Cursor, moof_start: u64, targets: &mut [FragmentTarget]) -> Result<()> {
    // Without an explicit base, the second and later trafs start where the
    // data of the one before ended (8.8.7.1).
    let mut next_base = moof_start;
    for child in c.children() {
        let child = child?;
        if &child.fourcc.0 == b"traf" {
            next_base = parse_traf(child.body, moof_start, next_base, targets)?;
        }
    }
    Ok(())
}

struct Tfhd {
    track_id: u32,
    base: Option<u64>,
    duration: Option<u32>,
    size: Option<u32>,
    flags: Option<u32>,
    base_is_moof: bool,
}

fn parse_tfhd(mut c: Cursor) -> Result<Tfhd> {
    let (_, flags) = c.full_box()?;
    let track_id = c.u32("track_ID")?;
    let mut opt = |bit: u32, what: &str| -> Result<Option<u32>> {
        if flags & bit != 0 {
            c.u32(what).map(Some)
        } else {
            Ok(None)
        }
    };
    let base_hi = opt(0x01, "base_data_offset")?;
    let base = match base_hi {
        Some(hi) => Some((u64::from(hi) << 32) | u64::from(c.u32("base_data_offset")?)),
        None => None,
    };
    let mut opt = |bit: u32, what: &str| -> Result<Option<u32>> {
        if flags & bit != 0 {
            c.u32(what).map(Some)
        } else {
            Ok(None)
        }
    };
    opt(0x02, "sample_description_index")?;
    Ok(Tfhd {
        track_id,
        base,
        duration: opt(0x08, "default_sample_duration")?,
        size: opt(0x10, "default_sample_size")?,
        flags: opt(0x20, "default_sample_flags")?,
        base_is_moof: flags & 0x02_0000 != 0,
    })
}

/// Returns where the data of this traf ends, the default base of the next.
fn parse_traf(
    mut c: Cursor,
    moof_start: u64,
    default_base: u64,
    targets: &mut [FragmentTarget],
) -> Result<u64> {
    let mut tfhd = None;
    let mut tfdt = None;
    let mut truns = Vec::new();
    for child in c.children() {
        let mut child = child?;
        match &child.fourcc.0 {
            b"tfhd" => tfhd = Some(parse_tfhd(child.body)?),
            b"tfdt" => {
                let (version, _) = child.body.full_box()?;
                tfdt = Some(child.body.u32_or_u64(version, "baseMediaDecodeTime")?);
            }
            b"trun" => truns.push(child.body),
            _ => {}
        }
    }
    let tfhd = tfhd.ok_or_else(|| c.error("traf has no 'tfhd'"))?;
    // A fragment of a track the moov does not list: its samples are walked
    // all the same, to find where the next traf's data starts.
    let mut stray_samples = TrackSamples::default();
    let (trex, keep, track) = match targets.iter_mut().find(|t| t.track_id == tfhd.track_id) {
        Some(t) => (t.trex, t.keep, &mut *t.samples),
        None => (Trex::default(), false, &mut stray_samples),
    };
    let base = match (tfhd.base, tfhd.base_is_moof) {
        (Some(b), _) => b,
        (None, true) => moof_start,
        (None, false) => default_base,
    };
    let defaults = Trex {
        track_id: tfhd.track_id,
        duration: tfhd.duration.unwrap_or(trex.duration),
        size: tfhd.size.unwrap_or(trex.size),
        flags: tfhd.flags.unwrap_or(trex.flags),
    };
    if let Some(t) = tfdt {
        track.end_dts = i64::try_from(t).map_err(|_| c.error("tfdt out of range"))?;
    }
    let mut data_pos = base;
    for trun in truns {
        data_pos = parse_trun(trun, base, data_pos, &defaults, track, keep)?;
    }
    Ok(data_pos)
}

/// Appends a trun's samples; returns the offset just after their data.
fn parse_trun(
    mut c: Cursor,
    base: u64,
    data_pos: u64,
    defaults: &Trex,
    track: &mut TrackSamples,
    keep: bool,
) -> Result<u64> {
    let (_, flags) = c.full_box()?;
    let entry_len = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count()
        * 4;
    let count_pos = c.offset();
    let count = c.u32("sample_count")? as usize;
    let mut pos = if flags & 0x01 != 0 {
        base.checked_add_signed(i64::from(c.i32("data_offset")?))
            .ok_or_else(|| c.error("data_offset before the start of the file"))?
    } else {
        data_pos
    };
    let first_flags = if flags & 0x04 != 0 {
        Some(c.u32("first_sample_flags")?)
    } else {
        None
    };
    // With per-sample fields the box bounds the count; without, a cap does
    // (the samples must still lie in the file, checked later).
    let max = c
        .remaining()
        .checked_div(entry_len)
        .unwrap_or(MAX_IMPLICIT_SAMPLES);
    if count > max {
        return Err(crate::packager::error::Error::corrupt(
            c.fourcc(),
            count_pos,
            format!("sample_count {count} does not fit in the box"),
        ));
    }
    if keep && track.samples.len().saturating_add(count) > MAX_TRACK_SAMPLES {
        return Err(crate::packager::error::Error::corrupt(
            c.fourcc(),
            count_pos,
            format!(
                "track {} has more than {MAX_TRACK_SAMPLES} samples",
                defaults.track_id
            ),
        ));
    }
    if track.sync.is_none() && !track.samples.is_empty() {
        // Sync samples were implicit so far; from here they are listed.
        track.sync = Some((0..track.samples.len() as u32).collect());
    }
    let sync = track.sync.get_or_insert_with(Vec::new);
    if keep {
        track.samples.reserve(count);
    }
    for i in 0..count {
        let duration = if flags & 0x100 != 0 {
            c.u32("sample_duration")?
        } else {
            defaults.duration
        };
        let size = if flags & 0x200 != 0 {
            c.u32("sample_size")?
        } else {
            defaults.size
        };
        let sample_flags = match (i, first_flags) {
            (0, Some(f)) => {
                if flags & 0x400 != 0 {
                    c.u32("sample_flags")?;
                }
                f
            }
            _ if flags & 0x400 != 0 => c.u32("sample_flags")?,
            _ => defaults.flags,
        };
        let cts_offset = if flags & 0x800 != 0 {
            c.i32("sample_composition_time_offset")?
        } else {
            0
        };
        if keep {
            if sample_flags & NON_SYNC == 0 {
                sync.push(track.samples.len() as u32);
            }
            track.samples.push(Sample {
                offset: pos,
                dts: track.end_dts,
                size,
                cts_offset,
            });
        }
        pos = pos.saturating_add(u64::from(size));
        track.end_dts = track
            .end_dts
            .checked_add(i64::from(duration))
            .ok_or_else(|| c.error("decode time overflows"))?;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use crate::packager::mp4::read_index_from_bytes;

    fn boxed(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [&(8 + body.len() as u32).to_be_bytes()[..], fourcc, body].concat()
    }

    /// A 16-byte trun may declare a million samples of the default size 0;
    /// many of them must not add up to gigabytes of index.
    #[test]
    fn many_implicit_truns_cannot_demand_gigabytes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/h264-aac-fragmented.mp4");
        let mut data = std::fs::read(path).unwrap();
        // tfhd: track 1, default-base-is-moof, default sample size 0.
        let tfhd = boxed(
            b"tfhd",
            &[
                &[0, 0x02, 0x00, 0x10][..],
                &1u32.to_be_bytes(),
                &0u32.to_be_bytes(),
            ]
            .concat(),
        );
        let trun = boxed(
            b"trun",
            &[&[0u8, 0, 0, 0][..], &(1u32 << 20).to_be_bytes()].concat(),
        );
        let mut traf = tfhd;
        for _ in 0..40 {
            traf.extend_from_slice(&trun);
        }
        data.extend_from_slice(&boxed(b"moof", &boxed(b"traf", &traf)));
        let err = read_index_from_bytes(&data).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }
}
