//! Movie fragments (ISO/IEC 14496-12 8.8): mvex/trex defaults and
//! moof/traf/tfhd/tfdt/trun, appended to the samples of the `moov`.

use super::cursor::Cursor;
use super::stbl::TrackSamples;
use crate::packager::error::Result;
use crate::packager::index::Sample;

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

/// A packaged track that fragments add samples to.
pub struct FragmentTarget<'t> {
    pub track_id: u32,
    pub samples: &'t mut TrackSamples,
}

/// Samples the fragments may still add, shared by the packaged tracks
/// (the file's budget less what the moov holds), and what was done.
pub struct Budget {
    pub samples_left: u64,
    /// Per-sample steps taken: kept samples, and entries summed to find
    /// where the data of a left-out track ends. Tests bound the work with it.
    pub samples_walked: u64,
}

/// sample_is_non_sync_sample in the sample flags (8.8.3.1).
const NON_SYNC: u32 = 0x0001_0000;

/// Reads one moof whose box starts at file offset `moof_start`. Samples of
/// `targets` are kept; the runs of any other track (left out, or not in
/// the moov at all) are only measured, to find where the next traf's data
/// starts (8.8.7.1), without a step per sample unless the run lists sizes.
pub fn parse_moof(
    mut c: Cursor,
    moof_start: u64,
    trex: &[Trex],
    targets: &mut [FragmentTarget],
    budget: &mut Budget,
) -> Result<()> {
    // Without an explicit base, the second and later trafs start where the
    // data of the one before ended.
    let mut next_base = moof_start;
    for child in c.children() {
        let child = child?;
        if &child.fourcc.0 == b"traf" {
            let at = Position {
                moof_start,
                default_base: next_base,
            };
            next_base = parse_traf(child.body, at, trex, targets, budget)?;
        }
    }
    Ok(())
}

/// Adds to `counts[n]` the samples this moof's runs declare for track
/// `ids[n]`; a first pass, so that sample lists are allocated once.
pub fn count_samples(mut c: Cursor, ids: &[u32], counts: &mut [u64]) -> Result<()> {
    for traf in c.children() {
        let mut traf = traf?;
        if &traf.fourcc.0 != b"traf" {
            continue;
        }
        let mut slot = None;
        for child in traf.body.children() {
            let mut child = child?;
            match &child.fourcc.0 {
                b"tfhd" => {
                    child.body.full_box()?;
                    let id = child.body.u32("track_ID")?;
                    slot = ids.iter().position(|&t| t == id);
                }
                b"trun" => {
                    if let Some(n) = slot {
                        child.body.full_box()?;
                        counts[n] += u64::from(child.body.u32("sample_count")?);
                    }
                }
                _ => {}
            }
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
    let base = if flags & 0x01 != 0 {
        Some(c.u64("base_data_offset")?)
    } else {
        None
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

/// Where a traf's data starts when it does not say.
#[derive(Clone, Copy)]
struct Position {
    moof_start: u64,
    default_base: u64,
}

/// Returns where the data of this traf ends, the default base of the next.
fn parse_traf(
    mut c: Cursor,
    at: Position,
    trex: &[Trex],
    targets: &mut [FragmentTarget],
    budget: &mut Budget,
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
    let trex = trex
        .iter()
        .copied()
        .find(|x| x.track_id == tfhd.track_id)
        .unwrap_or_default();
    let base = match (tfhd.base, tfhd.base_is_moof) {
        (Some(b), _) => b,
        (None, true) => at.moof_start,
        (None, false) => at.default_base,
    };
    let defaults = Trex {
        track_id: tfhd.track_id,
        duration: tfhd.duration.unwrap_or(trex.duration),
        size: tfhd.size.unwrap_or(trex.size),
        flags: tfhd.flags.unwrap_or(trex.flags),
    };
    let mut track = targets
        .iter_mut()
        .find(|t| t.track_id == tfhd.track_id)
        .map(|t| &mut *t.samples);
    if let (Some(track), Some(t)) = (track.as_deref_mut(), tfdt) {
        let t = i64::try_from(t).map_err(|_| c.error("tfdt out of range"))?;
        track.times.jump_to(t);
    }
    let mut data_pos = base;
    for trun in truns {
        let run = Run::parse_header(trun, base, data_pos)?;
        data_pos = match track.as_deref_mut() {
            Some(track) => run.keep(&defaults, track, budget)?,
            None => run.measure(&defaults, budget)?,
        };
    }
    Ok(data_pos)
}

/// One sample of a trun, its fields or the defaults.
struct Entry {
    duration: u32,
    size: u32,
    flags: u32,
    cts_offset: i32,
}

/// A trun whose header has been read; its entries follow in `c`.
struct Run<'a> {
    c: Cursor<'a>,
    flags: u32,
    count: u64,
    count_pos: u64,
    /// File offset of its first sample's data.
    pos: u64,
    first_flags: Option<u32>,
}

impl<'a> Run<'a> {
    fn parse_header(mut c: Cursor<'a>, base: u64, data_pos: u64) -> Result<Self> {
        let (_, flags) = c.full_box()?;
        let count_pos = c.offset();
        let count = u64::from(c.u32("sample_count")?);
        let pos = if flags & 0x01 != 0 {
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
        let run = Run {
            c,
            flags,
            count,
            count_pos,
            pos,
            first_flags,
        };
        // With per-sample fields the box bounds the count.
        let entry_len = run.entry_len();
        if entry_len > 0 && count.saturating_mul(entry_len) > run.c.remaining() as u64 {
            return Err(crate::packager::error::Error::corrupt(
                run.c.fourcc(),
                count_pos,
                format!("sample_count {count} does not fit in the box"),
            ));
        }
        Ok(run)
    }

    /// Reads entry `i` (8.8.8.2: the fields the trun's flags say are there).
    fn entry(&mut self, i: u64, defaults: &Trex) -> Result<Entry> {
        let flags = self.flags;
        let c = &mut self.c;
        let mut field = |bit: u32, what: &str, default: u32| {
            if flags & bit != 0 {
                c.u32(what)
            } else {
                Ok(default)
            }
        };
        let duration = field(0x100, "sample_duration", defaults.duration)?;
        let size = field(0x200, "sample_size", defaults.size)?;
        let listed = field(0x400, "sample_flags", defaults.flags)?;
        let cts_offset = field(0x800, "sample_composition_time_offset", 0)? as i32;
        Ok(Entry {
            duration,
            size,
            flags: match (i, self.first_flags) {
                (0, Some(f)) => f,
                _ => listed,
            },
            cts_offset,
        })
    }

    /// Bytes of per-sample fields per entry.
    fn entry_len(&self) -> u64 {
        [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|&&bit| self.flags & bit != 0)
            .count() as u64
            * 4
    }

    /// The offset just after the run's data, found without keeping its
    /// samples: one multiplication, or a sum over the sizes it lists.
    fn measure(mut self, defaults: &Trex, budget: &mut Budget) -> Result<u64> {
        if self.flags & 0x200 == 0 {
            let len = self.count.saturating_mul(u64::from(defaults.size));
            return Ok(self.pos.saturating_add(len));
        }
        // Skip the fields before the size in each entry, then the rest.
        let before = if self.flags & 0x100 != 0 { 4 } else { 0 };
        let after = self.entry_len() as usize - before - 4;
        let mut pos = self.pos;
        for _ in 0..self.count {
            self.c.skip(before, "sample_duration")?;
            pos = pos.saturating_add(u64::from(self.c.u32("sample_size")?));
            self.c.skip(after, "sample fields")?;
        }
        budget.samples_walked += self.count;
        Ok(pos)
    }

    /// Appends the run's samples to `track`; returns the offset just after
    /// their data.
    fn keep(
        mut self,
        defaults: &Trex,
        track: &mut TrackSamples,
        budget: &mut Budget,
    ) -> Result<u64> {
        if self.count > budget.samples_left {
            return Err(crate::packager::error::Error::corrupt(
                self.c.fourcc(),
                self.count_pos,
                format!(
                    "track {} would have more than the {} samples this file may have left",
                    defaults.track_id, budget.samples_left
                ),
            ));
        }
        budget.samples_left -= self.count;
        budget.samples_walked += self.count;
        if track.sync.is_none() && !track.samples.is_empty() {
            // Sync samples were implicit so far; from here they are listed.
            track.sync = Some((0..track.samples.len() as u32).collect());
        }
        let sync = track.sync.get_or_insert_with(Vec::new);
        track.samples.reserve(self.count as usize);
        let mut pos = self.pos;
        for i in 0..self.count {
            let entry = self.entry(i, defaults)?;
            if entry.flags & NON_SYNC == 0 {
                sync.push(track.samples.len() as u32);
            }
            track.samples.push(Sample {
                offset: pos,
                size: entry.size,
                cts_offset: entry.cts_offset,
            });
            pos = pos.saturating_add(u64::from(entry.size));
            track
                .times
                .push(1, entry.duration)
                .map_err(|_| self.c.error("decode time overflows"))?;
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use crate::packager::mp4::{read_index_counting, read_index_from_bytes};

    fn boxed(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [&(8 + body.len() as u32).to_be_bytes()[..], fourcc, body].concat()
    }

    fn fragmented_fixture() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/h264-aac-fragmented.mp4");
        std::fs::read(path).unwrap()
    }

    /// A traf of `track_id` (default-base-is-moof, default sample size
    /// `size`) with `runs` truns of `count` samples and no per-sample fields.
    fn moof_of_implicit_runs(track_id: u32, size: u32, runs: usize, count: u32) -> Vec<u8> {
        let tfhd = boxed(
            b"tfhd",
            &[
                &[0, 0x02, 0x00, 0x10][..],
                &track_id.to_be_bytes(),
                &size.to_be_bytes(),
            ]
            .concat(),
        );
        let trun = boxed(
            b"trun",
            &[&[0u8, 0, 0, 0][..], &count.to_be_bytes()].concat(),
        );
        let mut traf = tfhd;
        for _ in 0..runs {
            traf.extend_from_slice(&trun);
        }
        boxed(b"moof", &boxed(b"traf", &traf))
    }

    /// A 16-byte trun may declare a million samples of the default size 0;
    /// many of them must not add up to gigabytes of index.
    #[test]
    fn many_implicit_truns_cannot_demand_gigabytes() {
        let mut data = fragmented_fixture();
        data.extend_from_slice(&moof_of_implicit_runs(1, 0, 40, 1 << 20));
        let err = read_index_from_bytes(&data).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }

    /// The truns of a track the moov does not list were walked one sample
    /// at a time: 291 KB of them took 12.8 s of CPU. They are measured
    /// with one multiplication each now, so the per-sample steps are those
    /// of the packaged tracks and nothing else.
    #[test]
    fn stray_truns_are_measured_without_walking_their_samples() {
        let mut data = fragmented_fixture();
        data.extend_from_slice(&moof_of_implicit_runs(99, 1, 18_000, 1 << 20));
        let (index, walked) = read_index_counting(&data);
        let index = index.unwrap();
        let kept: usize = index.tracks().map(|t| t.samples.len()).sum();
        assert!(kept > 700, "the fixture's own samples are read");
        assert_eq!(walked, kept as u64);
    }
}
