//! The MP4/MOV reader (ISO/IEC 14496-12, QuickTime File Format): reads the
//! top-level boxes' headers, the `moov` and any `moof`, never the media data
//! (but for a few bytes of the video's sync samples), and turns them into a
//! [`MediaIndex`].
//!
//! Work is bounded by what is packaged: tracks are chosen before their
//! sample tables are expanded, the chosen tracks share one sample budget
//! ([`sample_budget`](crate::packager::index::sample_budget)), the runs of
//! other tracks in fragments are measured without a step per sample, and
//! no box is held whole but the small ones and one `moof` at a time.

mod aac;
mod access_units;
pub(crate) mod cursor;
mod fragment;
mod moov;
mod select;
mod source;
mod stbl;
mod stsd;
mod text;
mod trak;

use std::fs::File;

use cursor::Cursor;
use fragment::{Budget, FragmentTarget};
use moov::Movie;
use source::{FileSource, Located, ReadAt, Window};

use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{sample_budget, MediaIndex};
use crate::packager::Threads;

pub use text::TextTrack;

/// Largest `moof` we read into memory. Real ones hold a GOP or a few
/// seconds (kilobytes); 32 MiB is two million samples of 16-byte entries.
const MAX_MOOF_BYTES: u64 = 32 << 20;

/// A `moov` up to this size is announced to the source as read next
/// ([`ReadAt::will_read`]); two hours of video make about 10 MB.
const MOOV_READ_AHEAD: u64 = 32 << 20;

/// Block size of the window that walks box headers: a fill of two
/// blocks at each header, not the tables it steps over (those are read
/// through windows of their own).
const HEADER_BLOCK: usize = 4 << 10;

/// Boxes an MP4 or QuickTime file may begin with; anything else is not one.
const FIRST_BOXES: [&[u8; 4]; 11] = [
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"sidx",
    b"pdin",
];

/// Reads the index of an MP4 file.
pub fn read_index(file: &File) -> Result<MediaIndex> {
    let file_len = file.metadata()?.len();
    parse(&FileSource { file }, file_len, &mut 0, None, Threads::Auto)
}

/// Reads the index of an MP4 file for plans of segments of
/// `target_90k`: of its video's sync samples, only those such a plan can
/// start a segment at are checked for being random access points (see
/// [`access_units::Cuts`]). [`crate::packager::segment::plan`] with that
/// target gives the same segments as with a [`read_index`] index.
pub fn read_index_for_plan(file: &File, target_90k: i64) -> Result<MediaIndex> {
    let file_len = file.metadata()?.len();
    let source = FileSource { file };
    parse(&source, file_len, &mut 0, Some(target_90k), Threads::Auto)
}

/// Reads the index of the MP4 file of `len` bytes that `src` reads, for
/// plans of segments of `target_90k` (see [`read_index_for_plan`]).
pub fn read_index_from(
    src: &dyn crate::packager::media::MediaSource,
    len: u64,
    target_90k: i64,
) -> Result<MediaIndex> {
    parse(
        &source::Media(src),
        len,
        &mut 0,
        Some(target_90k),
        Threads::Auto,
    )
}

/// The subtitle tracks of the MP4 file of `len` bytes that `src` reads
/// (see [`text`]).
pub fn read_text_tracks_from(
    src: &dyn crate::packager::media::MediaSource,
    len: u64,
) -> Result<Vec<TextTrack>> {
    text::read_text_tracks(&source::Media(src), len)
}

/// Reads the index of an MP4 file held in memory (tests, fuzzing).
pub fn read_index_from_bytes(data: &[u8]) -> Result<MediaIndex> {
    read_index_from_bytes_with(data, Threads::Auto)
}

/// As [`read_index_from_bytes`], with its work on one thread or two.
pub fn read_index_from_bytes_with(data: &[u8], threads: Threads) -> Result<MediaIndex> {
    parse(&data, data.len() as u64, &mut 0, None, threads)
}

/// As [`read_index_from_bytes`], also counting the per-sample steps taken
/// in fragments (tests bound the work with it).
#[cfg(test)]
pub(crate) fn read_index_counting(data: &[u8]) -> (Result<MediaIndex>, u64) {
    let mut walked = 0;
    let index = parse(&data, data.len() as u64, &mut walked, None, Threads::Auto);
    (index, walked)
}

fn read_header(win: &mut Window, pos: u64, file_len: u64) -> Result<Option<Located>> {
    let left = file_len - pos;
    let avail = left.min(16) as usize;
    let buf = win.get(pos, avail, FourCc(*b"\0\0\0\0"))?;
    if left < 8 {
        if buf.iter().all(|&b| b == 0) {
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
    Ok(Some(Located {
        fourcc,
        start: pos,
        body: pos + header_len,
        end: pos.saturating_add(size),
    }))
}

fn parse(
    src: &dyn ReadAt,
    file_len: u64,
    walked: &mut u64,
    cut_target_90k: Option<i64>,
    threads: Threads,
) -> Result<MediaIndex> {
    let mut win = Window::new(src, file_len, HEADER_BLOCK);
    let mut movie: Option<Movie> = None;
    let mut budget = Budget {
        samples_left: 0,
        samples_walked: 0,
    };
    let mut pos = 0u64;
    while pos < file_len {
        let Some(h) = read_header(&mut win, pos, file_len)? else {
            break;
        };
        check_overrun(&h, file_len)?;
        match &h.fourcc.0 {
            b"moov" if movie.is_some() => {
                return Err(Error::corrupt(h.fourcc, pos, "second 'moov'"));
            }
            b"moov" => {
                // Its tables are read in several passes: one round trip for
                // all of it where reads cost one each.
                if h.end - h.start <= MOOV_READ_AHEAD {
                    src.will_read(&[(h.start, (h.end - h.start) as usize)]);
                }
                let mut m = moov::read_moov(&mut win, &h)?;
                if !m.fragmented {
                    // Its tables are expanded when its tracks are finished.
                    movie = Some(m);
                    break;
                }
                // The fragments add to the samples of the moov's tables.
                m.expand_tables(src, file_len)?;
                budget.samples_left = sample_budget(file_len).saturating_sub(m.sample_count());
                reserve_fragment_samples(&mut win, h.end, &mut m, budget.samples_left)?;
                movie = Some(m);
            }
            b"moof" => {
                let m = movie
                    .as_mut()
                    .ok_or_else(|| Error::corrupt(h.fourcc, pos, "'moof' before 'moov'"))?;
                read_moof(&mut win, &h, m, &mut budget)?;
            }
            _ => {}
        }
        pos = h.end;
    }
    *walked = budget.samples_walked;
    let movie = movie
        .ok_or_else(|| Error::corrupt(FourCc(*b"moov"), 0, "no 'moov' box: not an MP4 file"))?;
    select::finish(movie, src, file_len, cut_target_90k, threads)
}

/// Truncated media data or padding is left to the sample checks; a
/// truncated header box is fatal.
fn check_overrun(h: &Located, file_len: u64) -> Result<()> {
    if h.end <= file_len {
        return Ok(());
    }
    if !matches!(&h.fourcc.0, b"mdat" | b"free" | b"skip") {
        return Err(Error::corrupt(
            h.fourcc,
            h.start,
            format!(
                "box of {} bytes overruns the end of the file by {} bytes",
                h.end - h.start,
                h.end - file_len
            ),
        ));
    }
    tracing::debug!(
        "{} at {} overruns the file by {} bytes",
        h.fourcc,
        h.start,
        h.end - file_len
    );
    Ok(())
}

/// Reserves room for the samples the fragments after `from` add to the
/// chosen tracks, counted in a first pass over their moofs, so that the
/// sample lists never grow by doubling: an index of 2^23 samples would
/// otherwise pass through twice its size. More than `budget` between them
/// is an error at once, before anything is reserved.
fn reserve_fragment_samples(
    win: &mut Window,
    from: u64,
    movie: &mut Movie,
    budget: u64,
) -> Result<()> {
    let file_len = win.file_len();
    let ids: Vec<u32> = movie.chosen_mut().map(|c| c.trak.track_id).collect();
    let mut counts = vec![0u64; ids.len()];
    let mut pos = from;
    while pos < file_len {
        let Some(h) = read_header(win, pos, file_len)? else {
            break;
        };
        if &h.fourcc.0 == b"moof" && h.end <= file_len && h.body_len() <= MAX_MOOF_BYTES {
            let body = win.read_vec(h.body, h.body_len() as usize, h.fourcc)?;
            let c = Cursor::new(&body, h.body, h.fourcc);
            fragment::count_samples(c, &ids, &mut counts)?;
        }
        pos = h.end;
    }
    let total = counts.iter().sum::<u64>();
    if total > budget {
        return Err(stbl::over_budget(total, budget));
    }
    for (chosen, count) in movie.chosen_mut().zip(counts) {
        chosen.samples.samples.reserve_exact(count as usize);
    }
    Ok(())
}

fn read_moof(win: &mut Window, h: &Located, movie: &mut Movie, budget: &mut Budget) -> Result<()> {
    let trex = std::mem::take(&mut movie.trex);
    let mut targets: Vec<FragmentTarget> = movie
        .chosen_mut()
        .map(|c| FragmentTarget {
            track_id: c.trak.track_id,
            samples: &mut c.samples,
        })
        .collect();
    let result = read_moof_into(win, h, &trex, &mut targets, budget);
    movie.trex = trex;
    result
}

/// Adds the samples of the `moof` at `h` to those of `targets`.
fn read_moof_into(
    win: &mut Window,
    h: &Located,
    trex: &[fragment::Trex],
    targets: &mut [FragmentTarget],
    budget: &mut Budget,
) -> Result<()> {
    let len = h.body_len();
    if len > MAX_MOOF_BYTES {
        return Err(Error::corrupt(
            h.fourcc,
            h.start,
            format!("{len}-byte 'moof' is too large (at most {MAX_MOOF_BYTES})"),
        ));
    }
    let body = win.read_vec(h.body, len as usize, h.fourcc)?;
    let c = Cursor::new(&body, h.body, h.fourcc);
    fragment::parse_moof(c, h.start, trex, targets, budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packager::{segment, ts};
    use std::path::Path;

    /// Every MP4 the tests have: fixtures, fuzz regressions, and the shared
    /// media beside the project where it is.
    fn every_mp4() -> Vec<std::path::PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["tests/fixtures", "fuzz/regressions", "../shared/media"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("mp4" | "m4a" | "mov" | "m4v" | "m4b")
                )
            }));
        }
        files.sort();
        files
    }

    /// An index read for a plan checks only the sync samples that plan
    /// can cut at, and gives the same plan as one whose every sync sample
    /// was checked, for every file and target duration.
    #[test]
    fn an_index_read_for_a_plan_plans_as_a_fully_checked_one() {
        let mut fewer = 0;
        for path in every_mp4() {
            let data = std::fs::read(&path).unwrap();
            let name = path.display();
            let Ok(eager) = read_index_from_bytes(&data) else {
                continue;
            };
            for seconds in [1.0, 2.0, 6.0, 10.0] {
                let target = segment::target_90k(seconds);
                let len = data.len() as u64;
                let planned = parse(&data.as_slice(), len, &mut 0, Some(target), Threads::Auto);
                let planned = planned.unwrap_or_else(|e| panic!("{name}: {e}"));
                let (want, got) = (
                    segment::plan(&eager, target),
                    segment::plan(&planned, target),
                );
                assert_eq!(got.segments, want.segments, "{name} at {seconds} s");
                assert_eq!(
                    got.independent_segments(&planned),
                    want.independent_segments(&eager),
                    "{name} at {seconds} s"
                );
                let (Some(e), Some(p)) = (&eager.video, &planned.video) else {
                    continue;
                };
                assert!(
                    p.random_access.iter().all(|i| e.random_access.contains(i)),
                    "{name}: a random access point the full check does not find"
                );
                if p.random_access.len() < e.random_access.len() {
                    fewer += 1;
                }
            }
        }
        // 2 s GOPs cut every 6 or 10 s: a third or a fifth of them checked.
        assert!(
            fewer >= 10,
            "only {fewer} indexes checked fewer sync samples"
        );
    }

    /// The TS layout's packet counts, each PID's in a pass of its own,
    /// are those of the schedule the segment writer walks, for every file
    /// and target duration.
    #[test]
    fn packets_counted_per_pid_are_those_the_schedule_writes() {
        let mut segments = 0;
        for path in every_mp4() {
            let Ok(index) = read_index_from_bytes(&std::fs::read(&path).unwrap()) else {
                continue;
            };
            for seconds in [1.0, 2.0, 6.0, 10.0] {
                let plan = segment::plan(&index, segment::target_90k(seconds));
                let want: Vec<(u64, u64)> = plan
                    .segments
                    .iter()
                    .map(|s| ts::scheduled_packet_counts(&index, s))
                    .collect();
                let got = ts::packet_counts_of(&index, &plan.segments);
                assert_eq!(got, want, "{} at {seconds} s", path.display());
                segments += want.len();
            }
        }
        assert!(segments >= 150, "only {segments} segments compared");
    }

    #[test]
    fn one_thread_and_two_read_and_lay_out_every_file_the_same() {
        let files = every_mp4();
        assert!(files.len() >= 15, "only {} files found", files.len());
        let mut indexes = 0;
        for path in &files {
            let data = std::fs::read(path).unwrap();
            let one = read_index_from_bytes_with(&data, Threads::One);
            let both = read_index_from_bytes_with(&data, Threads::Both);
            let name = path.display();
            match (&one, &both) {
                (Ok(a), Ok(b)) => assert!(a == b, "{name}: the indexes differ"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{name}"),
                _ => panic!(
                    "{name}: {:?} on one thread, {:?} on two",
                    one.err(),
                    both.err()
                ),
            }
            let Ok(index) = one else { continue };
            indexes += 1;
            let plan = segment::plan(&index, 2 * 90_000);
            assert_eq!(
                ts::layout_with(&index, &plan.segments, Threads::One),
                ts::layout_with(&index, &plan.segments, Threads::Both),
                "{name}"
            );
        }
        assert!(indexes >= 10, "only {indexes} files read");
    }
}
