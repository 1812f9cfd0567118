//! Sample tables (ISO/IEC 14496-12 8.6-8.7): stts, ctts, stsc, stsz/stz2,
//! stco/co64 and stss, expanded into one flat array of samples.

use super::cursor::Cursor;
use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{Sample, MAX_TRACK_SAMPLES};

/// The raw sample table boxes of one track, each still unparsed.
#[derive(Default)]
pub struct SampleTables<'a> {
    pub stsd: Option<Cursor<'a>>,
    stts: Option<Cursor<'a>>,
    ctts: Option<Cursor<'a>>,
    stsc: Option<Cursor<'a>>,
    stsz: Option<Cursor<'a>>,
    stz2: Option<Cursor<'a>>,
    stco: Option<Cursor<'a>>,
    co64: Option<Cursor<'a>>,
    stss: Option<Cursor<'a>>,
}

impl<'a> SampleTables<'a> {
    pub fn parse(mut stbl: Cursor<'a>) -> Result<Self> {
        let mut t = SampleTables::default();
        for child in stbl.children() {
            let child = child?;
            let slot = match &child.fourcc.0 {
                b"stsd" => &mut t.stsd,
                b"stts" => &mut t.stts,
                b"ctts" => &mut t.ctts,
                b"stsc" => &mut t.stsc,
                b"stsz" => &mut t.stsz,
                b"stz2" => &mut t.stz2,
                b"stco" => &mut t.stco,
                b"co64" => &mut t.co64,
                b"stss" => &mut t.stss,
                _ => continue,
            };
            *slot = Some(child.body);
        }
        Ok(t)
    }
}

/// The samples of a track and which of them are sync samples.
#[derive(Default)]
pub struct TrackSamples {
    pub samples: Vec<Sample>,
    /// `None` when there is no stss: every sample is a sync sample.
    pub sync: Option<Vec<u32>>,
    pub end_dts: i64,
}

pub fn expand(t: &SampleTables, file_len: u64) -> Result<TrackSamples> {
    let sizes = match (&t.stsz, &t.stz2) {
        (Some(c), _) => read_stsz(c.clone(), file_len)?,
        (None, Some(c)) => read_stz2(c.clone())?,
        (None, None) => return Ok(TrackSamples::default()),
    };
    let count = sizes.len();
    if count > MAX_TRACK_SAMPLES {
        return Err(too_many(count));
    }
    let mut samples: Vec<Sample> = sizes
        .into_iter()
        .map(|size| Sample {
            offset: 0,
            dts: 0,
            size,
            cts_offset: 0,
        })
        .collect();
    let end_dts = match &t.stts {
        Some(c) => fill_stts(c.clone(), &mut samples)?,
        None if count == 0 => 0,
        None => return Err(missing("stts")),
    };
    if let Some(c) = &t.ctts {
        fill_ctts(c.clone(), &mut samples)?;
    }
    let chunk_offsets = match (&t.stco, &t.co64) {
        (Some(c), _) => read_chunk_offsets(c.clone(), false)?,
        (None, Some(c)) => read_chunk_offsets(c.clone(), true)?,
        (None, None) if count == 0 => Vec::new(),
        (None, None) => return Err(missing("stco")),
    };
    match &t.stsc {
        Some(c) => fill_offsets(c.clone(), &chunk_offsets, &mut samples)?,
        None if count == 0 => {}
        None => return Err(missing("stsc")),
    }
    let sync = match &t.stss {
        Some(c) => Some(read_stss(c.clone(), count)?),
        None => None,
    };
    Ok(TrackSamples {
        samples,
        sync,
        end_dts,
    })
}

fn missing(name: &str) -> crate::packager::error::Error {
    crate::packager::error::Error::corrupt(
        FourCc(*b"stbl"),
        0,
        format!("sample table has samples but no '{name}'"),
    )
}

fn too_many(count: usize) -> Error {
    Error::Unsupported(format!(
        "a track of {count} samples (at most {MAX_TRACK_SAMPLES})"
    ))
}

fn read_stsz(mut c: Cursor, file_len: u64) -> Result<Vec<u32>> {
    c.full_box()?;
    let sample_size = c.u32("sample_size")?;
    if sample_size != 0 {
        let count = u64::from(c.u32("sample_count")?);
        // Every sample lies in the file, so the file bounds their number.
        if count.saturating_mul(u64::from(sample_size)) > file_len {
            return Err(c.error(format!(
                "{count} samples of {sample_size} bytes cannot fit in a {file_len}-byte file"
            )));
        }
        if count > MAX_TRACK_SAMPLES as u64 {
            return Err(too_many(count as usize));
        }
        return Ok(vec![sample_size; count as usize]);
    }
    let count = c.count(4, "sample_count")?;
    (0..count).map(|_| c.u32("entry_size")).collect()
}

fn read_stz2(mut c: Cursor) -> Result<Vec<u32>> {
    c.full_box()?;
    c.skip(3, "reserved")?;
    let field_size = c.u8("field_size")?;
    let count = c.u32("sample_count")? as usize;
    let bytes_needed = match field_size {
        4 => count.div_ceil(2),
        8 => count,
        16 => count.saturating_mul(2),
        other => return Err(c.error(format!("stz2 field size {other}"))),
    };
    let table = c.bytes(bytes_needed, "stz2 entries")?;
    Ok((0..count)
        .map(|i| match field_size {
            4 => u32::from((table[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f),
            8 => u32::from(table[i]),
            _ => u32::from(u16::from_be_bytes([table[2 * i], table[2 * i + 1]])),
        })
        .collect())
}

/// Fills decode times from stts; returns the decode time after the last sample.
/// A table covering fewer samples than stsz repeats its last delta, one
/// covering more is cut: both occur in files players accept.
fn fill_stts(mut c: Cursor, samples: &mut [Sample]) -> Result<i64> {
    c.full_box()?;
    let entries = c.count(8, "stts entry count")?;
    let mut dts: i64 = 0;
    let mut i = 0;
    let mut delta = 0;
    for _ in 0..entries {
        let run = c.u32("sample_count")? as usize;
        delta = i64::from(c.u32("sample_delta")?);
        for s in samples.iter_mut().skip(i).take(run) {
            s.dts = dts;
            dts += delta;
        }
        i = i.saturating_add(run).min(samples.len());
    }
    for s in samples.iter_mut().skip(i) {
        s.dts = dts;
        dts += delta;
    }
    Ok(dts)
}

fn fill_ctts(mut c: Cursor, samples: &mut [Sample]) -> Result<()> {
    c.full_box()?;
    let entries = c.count(8, "ctts entry count")?;
    let mut i = 0;
    for _ in 0..entries {
        let run = c.u32("sample_count")? as usize;
        // Version 0 says unsigned, but muxers write negative offsets there
        // too; reading both as signed is what every player does.
        let offset = c.i32("sample_offset")?;
        for s in samples.iter_mut().skip(i).take(run) {
            s.cts_offset = offset;
        }
        i = i.saturating_add(run);
        if i >= samples.len() {
            break;
        }
    }
    Ok(())
}

fn read_chunk_offsets(mut c: Cursor, wide: bool) -> Result<Vec<u64>> {
    c.full_box()?;
    let count = c.count(if wide { 8 } else { 4 }, "chunk count")?;
    (0..count)
        .map(|_| {
            if wide {
                c.u64("chunk_offset")
            } else {
                c.u32("chunk_offset").map(u64::from)
            }
        })
        .collect()
}

/// Places samples in chunks (stsc) and chunks in the file (stco/co64).
fn fill_offsets(mut c: Cursor, chunks: &[u64], samples: &mut [Sample]) -> Result<()> {
    c.full_box()?;
    let entries = c.count(12, "stsc entry count")?;
    let mut runs = Vec::with_capacity(entries);
    for _ in 0..entries {
        let first_chunk = c.u32("first_chunk")?;
        let per_chunk = c.u32("samples_per_chunk")?;
        c.skip(4, "sample_description_index")?;
        if first_chunk == 0 || runs.last().is_some_and(|&(prev, _)| first_chunk <= prev) {
            return Err(c.error(format!("stsc first_chunk {first_chunk} out of order")));
        }
        runs.push((first_chunk, per_chunk));
    }
    let mut sample = 0usize;
    for (r, &(first_chunk, per_chunk)) in runs.iter().enumerate() {
        let last_chunk = runs
            .get(r + 1)
            .map_or(chunks.len(), |&(next, _)| (next - 1) as usize);
        let run = chunks
            .get(first_chunk as usize - 1..last_chunk.min(chunks.len()))
            .unwrap_or(&[]);
        for &chunk_offset in run {
            let mut offset = chunk_offset;
            for _ in 0..per_chunk {
                let Some(s) = samples.get_mut(sample) else {
                    return Ok(());
                };
                s.offset = offset;
                offset = offset.saturating_add(u64::from(s.size));
                sample += 1;
            }
        }
    }
    if sample < samples.len() {
        return Err(c.error(format!(
            "chunks hold {sample} samples, the sample size table has {}",
            samples.len()
        )));
    }
    Ok(())
}

fn read_stss(mut c: Cursor, sample_count: usize) -> Result<Vec<u32>> {
    c.full_box()?;
    let count = c.count(4, "stss entry count")?;
    let mut sync = Vec::with_capacity(count);
    for _ in 0..count {
        let number = c.u32("sample_number")?;
        if number == 0 || number as usize > sample_count {
            return Err(c.error(format!("sync sample {number} outside 1..={sample_count}")));
        }
        sync.push(number - 1);
    }
    sync.sort_unstable();
    sync.dedup();
    Ok(sync)
}
