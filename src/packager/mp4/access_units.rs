//! What the video samples hold, from their NAL unit headers (length-prefixed
//! NAL units, ISO/IEC 14496-15 5.3.2 and 8.3.2; nal_unit_type in ITU-T
//! H.264 7.4.1.2 Table 7-1 and H.265 7.4.2.2 Table 7-1), read at index time
//! with small positional reads:
//!
//! - where a decoder can really start: `stss` (or a fragment's sync flag)
//!   only says "sync sample", which muxers also set on H.264 recovery-point
//!   I pictures and on HEVC CRA pictures whose RASL pictures follow them and
//!   cannot be decoded without what came before (x265's default open GOP);
//! - with 1- or 2-byte NAL lengths, how many NAL units each sample holds,
//!   since each grows by `4 - length size` bytes in Annex B.

use super::source::{ReadAt, Window};
use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{Sample, VideoCodec, VideoConfig};
use crate::packager::Threads;

/// NAL units looked at in a sample before its first picture (VCL) NAL
/// unit: an AUD, parameter sets and a few SEI come first in real files.
const MAX_NALS_BEFORE_PICTURE: usize = 64;

/// Leading pictures (H.265 7.4.2.2: RADL/RASL) looked at after a CRA or
/// BLA; x265 writes at most its B-frame count (16) of them.
const MAX_LEADING_PICTURES: usize = 64;

/// Reads of sync samples spread out in the file go through small blocks;
/// a walk of every sample, through large ones.
const SPARSE_BLOCK: usize = 64;
const DENSE_BLOCK: usize = 256 << 10;

/// What the scan found; `nal_units` is empty with 4-byte NAL lengths.
pub struct Scan {
    pub random_access: Vec<u32>,
    pub nal_units: Vec<u32>,
}

/// The first picture NAL unit of a sample: its type, or `None` when the
/// sample has none within the limits (or is malformed, which the TS writer
/// reports when it meets it).
type FirstPicture = Option<u8>;

/// Where segments are to be cut, when it is known as the index is made:
/// then only the sync samples that the planner
/// ([`crate::packager::segment::plan`]) can cut at are checked, rather
/// than all of them (a third of them with 2 s GOPs and 6 s segments).
pub struct Cuts<'a> {
    /// The plan's target duration.
    pub target_90k: i64,
    /// The presentation time of a video sample, as the plan reads it
    /// ([`crate::packager::index::Track::pts_90k`]).
    pub pts_90k: &'a (dyn Fn(usize) -> i64 + Sync),
}

/// Scans the video samples (already checked to lie in the file) whose
/// sync samples are `sync` (`None`: all). With `cuts`, the random access
/// points found are those the plan for them needs, not all of them.
pub fn scan(
    src: &dyn ReadAt,
    file_len: u64,
    config: &VideoConfig,
    samples: &[Sample],
    sync: Option<&[u32]>,
    cuts: Option<&Cuts>,
    threads: Threads,
) -> Result<Scan> {
    // Reads that move forward fill each block about once; only samples
    // scattered back and forth over the file read more than this.
    let max_read = file_len.saturating_mul(4).saturating_add(16 << 20);
    let every_sample = config.nal_length_size != 4;
    let sparse = match sync {
        Some(list) if !every_sample && list.len() * 8 <= samples.len() => list,
        _ => {
            let mut walker = Walker::new(src, file_len, config, DENSE_BLOCK, max_read);
            return walker.scan_dense(samples, sync, every_sample);
        }
    };
    // With the cuts known, the sync samples the plan would cut at if each
    // were a random access point (as in real files): checked first, and
    // any other the plan then needs after them.
    let planned;
    let sparse = match cuts {
        Some(cuts) => {
            planned = cut_walk(sparse, cuts, |_| Ok(true))?;
            &planned
        }
        None => sparse,
    };
    // Each sync sample's first bytes, far apart: one round trip for all
    // of them where reads cost one each.
    let fills = Window::new(src, file_len, SPARSE_BLOCK);
    let spans: Vec<(u64, usize)> = sparse
        .iter()
        .filter_map(|&i| samples.get(i as usize))
        .map(|s| fills.fill_at(s.offset))
        .collect();
    src.will_read(&spans);
    // A read each, where a read costs more than the rest: a long file's
    // are shared between two threads (the bound on bytes read with them).
    let halves = threads.share(sparse.len(), PARALLEL_SYNC_SAMPLES);
    let max_read = if halves { max_read / 2 } else { max_read };
    let check = |part: &[u32]| -> Result<Vec<u32>> {
        let mut walker = Walker::new(src, file_len, config, SPARSE_BLOCK, max_read);
        walker.random_access(samples, part.iter().map(|&i| i as usize), &[])
    };
    let (first, later) = threads.map_halves(sparse, PARALLEL_SYNC_SAMPLES, check);
    let mut random_access = first?;
    if let Some(later) = later {
        random_access.extend(later?);
    }
    if let (Some(cuts), Some(all)) = (cuts, sync) {
        // The plan's own walk, checking what was not checked above.
        let mut walker = Walker::new(src, file_len, config, SPARSE_BLOCK, max_read);
        let mut found = Vec::new();
        cut_walk(all, cuts, |i| {
            let known = sparse.binary_search(&(i as u32)).is_ok();
            let ra = match known {
                true => random_access.binary_search(&(i as u32)).is_ok(),
                false => !walker
                    .random_access(samples, std::iter::once(i), &[])?
                    .is_empty(),
            };
            if ra && !known {
                found.push(i as u32);
            }
            Ok(ra)
        })?;
        random_access.extend(found);
        random_access.sort_unstable();
    }
    Ok(Scan {
        random_access,
        nal_units: Vec::new(),
    })
}

/// The sync samples of `sync` (ascending) that the plan for `cuts` starts
/// segments at, as [`crate::packager::segment`]'s walk over the random
/// access points finds them: the first random access point, then the
/// first one presented at or after each multiple of the target duration
/// after it. `is_random_access` is asked in order, and only of the sync
/// samples the walk could cut at when it asks.
fn cut_walk(
    sync: &[u32],
    cuts: &Cuts,
    mut is_random_access: impl FnMut(usize) -> Result<bool>,
) -> Result<Vec<u32>> {
    let target = cuts.target_90k.max(1);
    let mut found = Vec::new();
    // The first cut's time, the last cut's, and the next multiple's.
    let mut times: Option<(i64, i64, i64)> = None;
    for &i in sync {
        let t = (cuts.pts_90k)(i as usize);
        match times {
            None if is_random_access(i as usize)? => {
                found.push(i);
                times = Some((t, t, t + target));
            }
            Some((origin, last, next))
                if t >= next && t > last && is_random_access(i as usize)? =>
            {
                found.push(i);
                times = Some((origin, t, origin + ((t - origin) / target + 1) * target));
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Sync samples from which their checks are shared between two threads.
const PARALLEL_SYNC_SAMPLES: usize = 1024;

/// Whether sample `i` of `count` starts a sequence a decoder can start at
/// and decode whole: an H.264 IDR picture; an H.265 IDR or BLA picture, or
/// a CRA whose leading pictures are all RADL (a RASL picture refers to
/// pictures before the CRA, 7.4.2.2, and would be dropped or broken).
fn is_random_access(
    codec: VideoCodec,
    i: usize,
    count: usize,
    first_of: &mut dyn FnMut(usize) -> Result<FirstPicture>,
) -> Result<bool> {
    let Some(kind) = first_of(i)? else {
        return Ok(false);
    };
    Ok(match codec {
        VideoCodec::H264 => kind == 5,
        // BLA_N_LP, BLA_W_RADL, IDR_W_RADL, IDR_N_LP: no RASL pictures.
        VideoCodec::Hevc if (17..=20).contains(&kind) => true,
        // BLA_W_LP and CRA may have RASL pictures after them.
        VideoCodec::Hevc if kind == 16 || kind == 21 => {
            for j in i + 1..count.min(i + 1 + MAX_LEADING_PICTURES) {
                match first_of(j)? {
                    // RADL_N, RADL_R: decodable leading pictures.
                    Some(6 | 7) => {}
                    // RASL_N, RASL_R; or a picture we cannot classify.
                    Some(8 | 9) | None => return Ok(false),
                    // A trailing or IRAP picture: no leading picture is left.
                    Some(_) => return Ok(true),
                }
            }
            // The track ends within the leading pictures, or there are
            // more than we look at.
            count <= i + 1 + MAX_LEADING_PICTURES
        }
        VideoCodec::Hevc => false,
        // Not NAL units: never scanned (`select`), their sync samples are
        // their random access points.
        VideoCodec::Av1 | VideoCodec::Vp9 => true,
    })
}

struct Walker<'s, 'c> {
    win: Window<'s>,
    config: &'c VideoConfig,
    max_read: u64,
}

impl<'s, 'c> Walker<'s, 'c> {
    fn new(
        src: &'s dyn ReadAt,
        file_len: u64,
        config: &'c VideoConfig,
        block: usize,
        max_read: u64,
    ) -> Self {
        Walker {
            win: Window::new(src, file_len, block),
            config,
            max_read,
        }
    }

    /// Every sample's NAL units walked front to back (and counted, when
    /// `count_all`), then the random access points among `sync`.
    fn scan_dense(
        &mut self,
        samples: &[Sample],
        sync: Option<&[u32]>,
        count_all: bool,
    ) -> Result<Scan> {
        let mut firsts: Vec<FirstPicture> = Vec::new();
        let mut nal_units = Vec::new();
        if count_all {
            firsts.reserve(samples.len());
            nal_units.reserve(samples.len());
            for s in samples {
                let (count, first) = self.walk(s, true)?;
                nal_units.push(count);
                firsts.push(first);
            }
        }
        let random_access = match sync {
            Some(list) => self.random_access(samples, list.iter().map(|&i| i as usize), &firsts)?,
            None => self.random_access(samples, 0..samples.len(), &firsts)?,
        };
        Ok(Scan {
            random_access,
            nal_units,
        })
    }

    /// Which of `candidates` are random access points; the first picture
    /// of each sample is taken from `firsts` where it is known.
    fn random_access(
        &mut self,
        samples: &[Sample],
        candidates: impl Iterator<Item = usize>,
        firsts: &[FirstPicture],
    ) -> Result<Vec<u32>> {
        let codec = self.config.codec;
        let mut first_of = |i: usize| -> Result<FirstPicture> {
            match firsts.get(i) {
                Some(&known) => Ok(known),
                None => Ok(self.walk(&samples[i], false)?.1),
            }
        };
        let mut found = Vec::new();
        for i in candidates {
            if is_random_access(codec, i, samples.len(), &mut first_of)? {
                found.push(i as u32);
            }
        }
        Ok(found)
    }

    /// Walks the NAL units of `s`: how many there are (all of them when
    /// `count_all`, else up to the first picture) and the first picture's
    /// type.
    fn walk(&mut self, s: &Sample, count_all: bool) -> Result<(u32, FirstPicture)> {
        let len_size = usize::from(self.config.nal_length_size);
        let codec = self.config.codec;
        let header_len = if codec == VideoCodec::H264 { 1 } else { 2 };
        let end = s.offset + u64::from(s.size);
        let mut pos = s.offset;
        let mut count = 0u32;
        let mut first = None;
        while end - pos >= len_size as u64 {
            if !count_all && (first.is_some() || count as usize >= MAX_NALS_BEFORE_PICTURE) {
                break;
            }
            let nal_len = self
                .read(pos, len_size)?
                .iter()
                .fold(0u64, |n, &b| (n << 8) | u64::from(b));
            pos += len_size as u64;
            count += 1;
            if nal_len > end - pos {
                // Malformed: the TS writer reports it with the sample.
                return Ok((count, None));
            }
            if first.is_none() && nal_len >= header_len as u64 {
                let header = self.read(pos, header_len)?;
                first = picture_type(codec, header);
            }
            pos += nal_len;
        }
        Ok((count, first))
    }

    fn read(&mut self, pos: u64, len: usize) -> Result<&[u8]> {
        if self.win.bytes_read > self.max_read {
            return Err(Error::Unsupported(format!(
                "the video samples are scattered over the file: checking their \
                 NAL unit headers read more than {} bytes",
                self.max_read
            )));
        }
        self.win.get(pos, len, FourCc(*b"mdat"))
    }
}

/// The parameter sets (H.264 SPS and PPS, H.265 VPS, SPS and PPS) that
/// sample `s` holds before its first picture: where avc3 and hev1 tracks
/// may keep all of them (ISO/IEC 14496-15 5.4.2, 8.4.2).
pub fn in_band_parameter_sets(
    src: &dyn ReadAt,
    file_len: u64,
    config: &VideoConfig,
    s: &Sample,
) -> Result<Vec<Vec<u8>>> {
    let mdat = FourCc(*b"mdat");
    let len_size = usize::from(config.nal_length_size);
    let header_len: u64 = if config.codec == VideoCodec::H264 {
        1
    } else {
        2
    };
    let mut win = Window::new(src, file_len, SPARSE_BLOCK);
    let end = s.offset + u64::from(s.size);
    let mut pos = s.offset;
    let mut sets = Vec::new();
    for _ in 0..MAX_NALS_BEFORE_PICTURE {
        if end - pos < len_size as u64 + header_len {
            break;
        }
        let nal_len = win
            .get(pos, len_size, mdat)?
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b));
        pos += len_size as u64;
        if nal_len > end - pos || nal_len < header_len {
            break;
        }
        let header = win.get(pos, header_len as usize, mdat)?;
        if picture_type(config.codec, header).is_some() {
            break;
        }
        if is_parameter_set(config.codec, header[0]) && nal_len <= u64::from(u16::MAX) {
            sets.push(win.read_vec(pos, nal_len as usize, mdat)?);
        }
        pos += nal_len;
    }
    Ok(sets)
}

/// Whether a NAL unit whose header begins with `first` is a parameter set.
pub fn is_parameter_set(codec: VideoCodec, first: u8) -> bool {
    match codec {
        VideoCodec::H264 => matches!(first & 0x1f, 7 | 8),
        VideoCodec::Hevc => (32..=34).contains(&((first >> 1) & 0x3f)),
        VideoCodec::Av1 | VideoCodec::Vp9 => false,
    }
}

/// The nal_unit_type of a picture (VCL) NAL unit of the base layer, or
/// `None` for any other NAL unit.
fn picture_type(codec: VideoCodec, header: &[u8]) -> Option<u8> {
    match codec {
        // Table 7-1: 1..=5 are coded slices.
        VideoCodec::H264 => Some(header[0] & 0x1f).filter(|t| (1..=5).contains(t)),
        VideoCodec::Av1 | VideoCodec::Vp9 => None,
        // Table 7-1: 0..=31 are VCL; nuh_layer_id must be 0 (base layer).
        VideoCodec::Hevc => {
            let kind = (header[0] >> 1) & 0x3f;
            let layer = ((header[0] & 1) << 5) | (header[1] >> 3);
            Some(kind).filter(|&t| t < 32 && layer == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(codec: VideoCodec, nal_length_size: u8) -> VideoConfig {
        VideoConfig {
            codec,
            nal_length_size,
            parameter_sets: Vec::new(),
            width: 16,
            height: 16,
            codec_string: "x".into(),
            config: Vec::new(),
        }
    }

    /// Lays out samples of NAL units (each given by its header bytes and a
    /// payload length) with `len_size`-byte lengths.
    fn file_of(samples: &[&[(&[u8], usize)]], len_size: usize) -> (Vec<u8>, Vec<Sample>) {
        let mut data = Vec::new();
        let mut index = Vec::new();
        for nals in samples {
            let offset = data.len() as u64;
            for (header, payload) in *nals {
                let len = header.len() + payload;
                data.extend_from_slice(&len.to_be_bytes()[8 - len_size..]);
                data.extend_from_slice(header);
                data.resize(data.len() + payload, 0x55);
            }
            index.push(Sample {
                offset,
                size: (data.len() as u64 - offset) as u32,
                cts_offset: 0,
            });
        }
        (data, index)
    }

    fn hevc(kind: u8) -> [u8; 2] {
        [kind << 1, 1]
    }

    #[test]
    fn h264_only_idr_pictures_are_random_access() {
        let (sei, idr, non_idr) = ([0x06u8], [0x65u8], [0x41u8]);
        let first: &[(&[u8], usize)] = &[(&sei, 700), (&idr, 50)];
        let p_picture: &[(&[u8], usize)] = &[(&non_idr, 20)];
        let i_with_recovery_point: &[(&[u8], usize)] = &[(&sei, 10), (&[0x21], 30)];
        let idr_picture: &[(&[u8], usize)] = &[(&idr, 40)];
        // An I picture with a recovery point: a sync sample, not an IDR.
        let mut samples = vec![first, p_picture, i_with_recovery_point, idr_picture];
        let c = config(VideoCodec::H264, 4);
        // Sync samples close together are read with their neighbours, far
        // apart one by one (and on two threads at once, a long file's).
        for (padding, threads) in [(0, Threads::One), (20, Threads::One), (20, Threads::Both)] {
            samples.resize(4 + padding, p_picture);
            let (data, index) = file_of(&samples, 4);
            let src: &[u8] = &data;
            let scan = scan(
                &src,
                data.len() as u64,
                &c,
                &index,
                Some(&[0, 2, 3]),
                None,
                threads,
            );
            let scan = scan.unwrap();
            assert_eq!(scan.random_access, [0, 3], "{padding} more, {threads:?}");
            assert!(scan.nal_units.is_empty());
        }
    }

    #[test]
    fn hevc_cra_is_random_access_only_without_rasl_pictures_after_it() {
        let (idr, cra, trail, rasl, radl) = (hevc(19), hevc(21), hevc(1), hevc(8), hevc(6));
        let samples: &[&[(&[u8], usize)]] = &[
            &[(&hevc(35), 1), (&idr, 30)],
            &[(&trail, 10)],
            &[(&cra, 30)], // 2: followed by RASL pictures
            &[(&rasl, 10)],
            &[(&rasl, 10)],
            &[(&trail, 10)],
            &[(&cra, 30)], // 6: followed by a RADL picture only
            &[(&radl, 10)],
            &[(&trail, 10)],
            &[(&hevc(17), 30)], // 9: BLA_W_RADL
        ];
        for len_size in [4, 2, 1] {
            let (data, index) = file_of(samples, len_size);
            let src: &[u8] = &data;
            let c = config(VideoCodec::Hevc, len_size as u8);
            let sync = Some(&[0, 2, 6, 9][..]);
            let scan = scan(
                &src,
                data.len() as u64,
                &c,
                &index,
                sync,
                None,
                Threads::Auto,
            )
            .unwrap();
            assert_eq!(scan.random_access, [0, 6, 9], "lengths of {len_size}");
            let want: Vec<u32> = if len_size == 4 {
                Vec::new()
            } else {
                samples.iter().map(|s| s.len() as u32).collect()
            };
            assert_eq!(scan.nal_units, want, "lengths of {len_size}");
        }
    }

    /// x265's open GOP: a CRA every 25 frames, all in stss, of which only
    /// the one in decode position 50 has no RASL picture after it.
    #[test]
    fn open_gop_fixture_starts_only_at_its_idr_and_its_clean_cra() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hevc-open-gop.mp4");
        let file = std::fs::File::open(path).unwrap();
        let index = crate::packager::mp4::read_index(&file).unwrap();
        let video = index.video.unwrap();
        assert_eq!(video.sync.as_ref().map(Vec::len), Some(6));
        assert_eq!(video.random_access, [0, 50]);
    }

    #[test]
    fn a_malformed_sample_is_no_random_access_point() {
        let (mut data, index) = file_of(&[&[(&[0x65], 40)], &[(&[0x65], 40)]], 4);
        data[3] = 200; // the first NAL unit now runs past its sample
        let src: &[u8] = &data;
        let c = config(VideoCodec::H264, 4);
        let scan = scan(
            &src,
            data.len() as u64,
            &c,
            &index,
            None,
            None,
            Threads::Auto,
        )
        .unwrap();
        assert_eq!(scan.random_access, [1]);
    }

    #[test]
    fn in_band_parameter_sets_are_those_before_the_first_picture() {
        let (vps, sps, pps, sei, idr) = (hevc(32), hevc(33), hevc(34), hevc(39), hevc(19));
        let samples: &[&[(&[u8], usize)]] = &[&[
            (&hevc(35), 1),
            (&vps, 5),
            (&sps, 9),
            (&pps, 3),
            (&sei, 4),
            (&idr, 30),
            (&pps, 3),
        ]];
        for len_size in [4, 2, 1] {
            let (data, index) = file_of(samples, len_size);
            let src: &[u8] = &data;
            let c = config(VideoCodec::Hevc, len_size as u8);
            let sets = in_band_parameter_sets(&src, data.len() as u64, &c, &index[0]).unwrap();
            let kinds: Vec<(u8, usize)> = sets.iter().map(|s| (s[0] >> 1, s.len())).collect();
            assert_eq!(kinds, [(32, 7), (33, 11), (34, 5)], "lengths of {len_size}");
        }
    }
}
