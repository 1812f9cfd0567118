//! Sample tables (ISO/IEC 14496-12 8.6-8.7): stts, ctts, stsc, stsz/stz2,
//! stco/co64 and stss, expanded into one flat array of samples. Tables are
//! read front to back from the file, never held whole; only the tracks
//! chosen for packaging are expanded.

use super::source::{Located, ReadAt, TableReader, Window};
use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::Timeline;
use crate::packager::index::{Sample, MAX_FILE_SAMPLES, MIN_BYTES_PER_SAMPLE};

/// Where the sample table boxes of one track are in the file.
#[derive(Clone, Copy, Default)]
pub struct SampleTables {
    stts: Option<Located>,
    ctts: Option<Located>,
    stsc: Option<Located>,
    stsz: Option<Located>,
    stz2: Option<Located>,
    stco: Option<Located>,
    co64: Option<Located>,
    stss: Option<Located>,
}

impl SampleTables {
    /// Records `b` if it is one of the tables; returns whether it was.
    pub fn record(&mut self, b: Located) -> bool {
        let slot = match &b.fourcc.0 {
            b"stts" => &mut self.stts,
            b"ctts" => &mut self.ctts,
            b"stsc" => &mut self.stsc,
            b"stsz" => &mut self.stsz,
            b"stz2" => &mut self.stz2,
            b"stco" => &mut self.stco,
            b"co64" => &mut self.co64,
            b"stss" => &mut self.stss,
            _ => return false,
        };
        *slot = Some(b);
        true
    }

    /// The sample count the size table declares, read without expanding it.
    pub fn declared_samples(&self, win: &mut Window) -> Result<u64> {
        // stsz: version/flags, sample_size, sample_count; stz2: version/flags,
        // reserved and field_size, sample_count (8.7.3).
        let Some(table) = self.stsz.or(self.stz2) else {
            return Ok(0);
        };
        if table.body_len() < 12 {
            return Err(Error::corrupt(
                table.fourcc,
                table.start,
                "sample size box too short",
            ));
        }
        let count = win.get(table.body + 8, 4, table.fourcc)?;
        Ok(u64::from(u32::from_be_bytes(
            count.try_into().expect("4 bytes"),
        )))
    }
}

/// The samples of a track and which of them are sync samples.
#[derive(Default)]
pub struct TrackSamples {
    pub samples: Vec<Sample>,
    /// Their decode times.
    pub times: Timeline,
    /// `None` when there is no stss: every sample is a sync sample.
    pub sync: Option<Vec<u32>>,
}

/// Expands the tables of one track; it may have at most `budget` samples.
pub fn expand(
    t: &SampleTables,
    src: &dyn ReadAt,
    file_len: u64,
    budget: u64,
) -> Result<TrackSamples> {
    let reader = |table: &Located| TableReader::new(src, file_len, table);
    let mut samples = match (&t.stsz, &t.stz2) {
        (Some(b), _) => read_stsz(reader(b), file_len, budget)?,
        (None, Some(b)) => read_stz2(reader(b), budget)?,
        (None, None) => return Ok(TrackSamples::default()),
    };
    let count = samples.len();
    let times = match &t.stts {
        Some(b) => read_stts(reader(b), count)?,
        None if count == 0 => Timeline::default(),
        None => return Err(missing("stts")),
    };
    if let Some(b) = &t.ctts {
        fill_ctts(reader(b), &mut samples)?;
    }
    let chunks = match (&t.stco, &t.co64) {
        (Some(b), _) => Some((reader(b), false)),
        (None, Some(b)) => Some((reader(b), true)),
        (None, None) => None,
    };
    match (&t.stsc, chunks) {
        (Some(b), Some((chunks, wide))) => {
            fill_offsets(reader(b), ChunkOffsets::new(chunks, wide)?, &mut samples)?
        }
        _ if count == 0 => {}
        (None, _) => return Err(missing("stsc")),
        (_, None) => return Err(missing("stco")),
    }
    let sync = match &t.stss {
        Some(b) => Some(read_stss(reader(b), count)?),
        None => None,
    };
    Ok(TrackSamples {
        samples,
        times,
        sync,
    })
}

fn missing(name: &str) -> Error {
    Error::corrupt(
        FourCc(*b"stbl"),
        0,
        format!("sample table has samples but no '{name}'"),
    )
}

/// The packaged tracks declare more samples than the file's budget allows.
pub fn over_budget(count: u64, budget: u64) -> Error {
    Error::Unsupported(format!(
        "{count} samples in the packaged tracks, more than the {budget} a file of this \
         size may have (one per {MIN_BYTES_PER_SAMPLE} bytes, at most {MAX_FILE_SAMPLES})"
    ))
}

fn sample(size: u32) -> Sample {
    Sample {
        offset: 0,
        size,
        cts_offset: 0,
    }
}

fn read_stsz(mut c: TableReader, file_len: u64, budget: u64) -> Result<Vec<Sample>> {
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
        if count > budget {
            return Err(over_budget(count, budget));
        }
        return Ok(vec![sample(sample_size); count as usize]);
    }
    let count = c.count(4, "sample_count")?;
    if count > budget {
        return Err(over_budget(count, budget));
    }
    let mut samples = Vec::with_capacity(count as usize);
    c.entries(count, 4, "entry_size", |e| {
        samples.push(sample(be32(e)));
        true
    })?;
    Ok(samples)
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"))
}

fn read_stz2(mut c: TableReader, budget: u64) -> Result<Vec<Sample>> {
    c.full_box()?;
    c.bytes(3, "reserved")?;
    let field_size = c.u8("field_size")?;
    let count = u64::from(c.u32("sample_count")?);
    let bytes_needed = match field_size {
        4 => count.div_ceil(2),
        8 => count,
        16 => count * 2,
        other => return Err(c.error(format!("stz2 field size {other}"))),
    };
    if bytes_needed > c.remaining() {
        return Err(c.error(format!("{count} stz2 entries do not fit in the box")));
    }
    if count > budget {
        return Err(over_budget(count, budget));
    }
    let mut samples = Vec::with_capacity(count as usize);
    let mut byte = 0;
    for i in 0..count {
        let size = match field_size {
            4 if i % 2 == 0 => {
                byte = c.u8("entry_size")?;
                u32::from(byte >> 4)
            }
            4 => u32::from(byte & 0x0f),
            8 => u32::from(c.u8("entry_size")?),
            _ => u32::from(c.u16("entry_size")?),
        };
        samples.push(sample(size));
    }
    Ok(samples)
}

/// Decode times of `count` samples from stts. A table covering fewer
/// samples than stsz repeats its last delta, one covering more is cut: both
/// occur in files players accept.
fn read_stts(mut c: TableReader, count: usize) -> Result<Timeline> {
    c.full_box()?;
    let entries = c.count(8, "stts entry count")?;
    let mut times = Timeline::default();
    let mut delta = 0;
    let mut overflow = false;
    c.entries(entries, 8, "stts entry", |e| {
        let left = count - times.len();
        if left == 0 {
            return false;
        }
        let run = be32(e).min(u32::try_from(left).unwrap_or(u32::MAX));
        delta = be32(&e[4..]);
        overflow = times.push(run, delta).is_err();
        !overflow
    })?;
    let left = count - times.len();
    if overflow || times.push(left as u32, delta).is_err() {
        return Err(c.error("decode times overflow"));
    }
    times.compact();
    Ok(times)
}

fn fill_ctts(mut c: TableReader, samples: &mut [Sample]) -> Result<()> {
    c.full_box()?;
    let entries = c.count(8, "ctts entry count")?;
    let mut i = 0usize;
    c.entries(entries, 8, "ctts entry", |e| {
        if i >= samples.len() {
            return false;
        }
        let run = be32(e) as usize;
        // Version 0 says unsigned, but muxers write negative offsets there
        // too; reading both as signed is what every player does.
        let offset = be32(&e[4..]) as i32;
        for s in samples.iter_mut().skip(i).take(run) {
            s.cts_offset = offset;
        }
        i = i.saturating_add(run);
        true
    })?;
    Ok(())
}

/// stco or co64, read forward a batch of chunks at a time (a table may
/// list far more chunks than the samples use).
struct ChunkOffsets<'s> {
    table: TableReader<'s>,
    wide: bool,
    count: u64,
    /// Offsets of chunks `first..first + batch.len()`.
    batch: Vec<u64>,
    first: u64,
}

/// Chunk offsets read at a time.
const CHUNK_BATCH: u64 = 8192;

impl<'s> ChunkOffsets<'s> {
    fn new(mut table: TableReader<'s>, wide: bool) -> Result<Self> {
        table.full_box()?;
        let count = table.count(if wide { 8 } else { 4 }, "chunk count")?;
        Ok(ChunkOffsets {
            table,
            wide,
            count,
            batch: Vec::new(),
            first: 0,
        })
    }

    /// The offset of chunk `index` (below `count`), which is at or after
    /// the last one asked for.
    fn get(&mut self, index: u64) -> Result<u64> {
        while index >= self.first + self.batch.len() as u64 {
            self.first += self.batch.len() as u64;
            self.batch.clear();
            let n = CHUNK_BATCH.min(self.count.saturating_sub(self.first));
            if n == 0 {
                return Err(self.table.error(format!("no chunk {index}")));
            }
            let (wide, batch) = (self.wide, &mut self.batch);
            self.table
                .entries(n, if wide { 8 } else { 4 }, "chunk_offset", |e| {
                    batch.push(if wide {
                        u64::from_be_bytes(e.try_into().expect("8 bytes"))
                    } else {
                        u64::from(be32(e))
                    });
                    true
                })?;
        }
        Ok(self.batch[(index - self.first) as usize])
    }
}

/// Places samples in chunks (stsc) and chunks in the file (stco/co64).
fn fill_offsets(
    mut c: TableReader,
    mut chunks: ChunkOffsets,
    samples: &mut [Sample],
) -> Result<()> {
    c.full_box()?;
    let entries = c.count(12, "stsc entry count")?;
    let mut stsc = StscEntries {
        table: c,
        left: entries,
        batch: Vec::new(),
        at: 0,
    };
    let mut sample = 0usize;
    let mut next = stsc.next()?;
    while let Some((first_chunk, per_chunk)) = next {
        next = stsc.next()?;
        if first_chunk == 0 || next.is_some_and(|(n, _)| n <= first_chunk) {
            return Err(stsc
                .table
                .error(format!("stsc first_chunk {first_chunk} out of order")));
        }
        let last_chunk = next.map_or(chunks.count, |(n, _)| u64::from(n) - 1);
        for chunk in u64::from(first_chunk) - 1..last_chunk.min(chunks.count) {
            let mut offset = chunks.get(chunk)?;
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
        return Err(stsc.table.error(format!(
            "chunks hold {sample} samples, the sample size table has {}",
            samples.len()
        )));
    }
    Ok(())
}

/// stsc entries `(first_chunk, samples_per_chunk)`, read a batch at a time
/// (an interleaved file has one per chunk of a track: 189k for two hours).
struct StscEntries<'s> {
    table: TableReader<'s>,
    left: u64,
    batch: Vec<(u32, u32)>,
    at: usize,
}

impl StscEntries<'_> {
    fn next(&mut self) -> Result<Option<(u32, u32)>> {
        if self.at == self.batch.len() {
            if self.left == 0 {
                return Ok(None);
            }
            let n = self.left.min(CHUNK_BATCH);
            let batch = &mut self.batch;
            batch.clear();
            self.table.entries(n, 12, "stsc entry", |e| {
                batch.push((be32(e), be32(&e[4..])));
                true
            })?;
            self.left -= n;
            self.at = 0;
        }
        self.at += 1;
        Ok(Some(self.batch[self.at - 1]))
    }
}

/// Sync samples, ascending and without repeats, however the table lists
/// them: marked in a map of the samples, so that a table of millions of
/// repeated entries for a short track takes no more memory than the track.
fn read_stss(mut c: TableReader, sample_count: usize) -> Result<Vec<u32>> {
    c.full_box()?;
    let count = c.count(4, "stss entry count")?;
    let mut is_sync = vec![false; sample_count];
    for _ in 0..count {
        let number = c.u32("sample_number")?;
        if number == 0 || number as usize > sample_count {
            return Err(c.error(format!("sync sample {number} outside 1..={sample_count}")));
        }
        is_sync[number as usize - 1] = true;
    }
    Ok((0..sample_count as u32)
        .filter(|&i| is_sync[i as usize])
        .collect())
}
