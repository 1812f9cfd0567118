//! The movie box (ISO/IEC 14496-12 8.2): mvhd, the traks and mvex, walked
//! in the file. Tracks are chosen as they are met, and only the chosen
//! ones have their sample tables expanded, within the file's budget.

use super::fragment::{self, Trex};
use super::source::{next_child, Located, ReadAt, Window};
use super::stbl::{self, TrackSamples};
use super::trak::{self, leaf_cursor, read_leaf, Trak};
use crate::packager::error::{Error, Result};
use crate::packager::index::{sample_budget, Codec, MAX_MORE_AUDIO};

/// A track chosen for packaging, with its samples so far: none until its
/// tables are expanded ([`Movie::expand_tables`], or when the track is
/// finished).
pub struct Chosen {
    pub trak: Trak,
    pub samples: TrackSamples,
    pub expanded: bool,
}

impl Chosen {
    fn new(trak: Trak) -> Chosen {
        Chosen {
            trak,
            samples: TrackSamples::default(),
            expanded: false,
        }
    }

    /// Expands its sample tables, once.
    pub fn expand(&mut self, src: &dyn ReadAt, file_len: u64) -> Result<()> {
        if !self.expanded {
            self.samples = stbl::expand(&self.trak.tables, src, file_len, sample_budget(file_len))?;
            self.expanded = true;
        }
        Ok(())
    }
}

pub struct Movie {
    pub timescale: u32,
    pub fragmented: bool,
    pub trex: Vec<Trex>,
    pub video: Option<Chosen>,
    pub audio: Option<Chosen>,
    /// The other audio tracks kept (see `MediaIndex::more_audio`).
    pub more_audio: Vec<Chosen>,
    /// Tracks left out, each with the reason.
    pub skipped: Vec<String>,
    /// Subtitle tracks, not packaged with the media: read on their own
    /// ([`super::text`]).
    pub text: Vec<Trak>,
}

impl Movie {
    pub fn chosen_mut(&mut self) -> impl Iterator<Item = &mut Chosen> {
        self.video
            .iter_mut()
            .chain(self.audio.iter_mut())
            .chain(self.more_audio.iter_mut())
    }

    /// Expands the chosen tracks' sample tables, one after the other (a
    /// fragmented file's, before its fragments add to them).
    pub fn expand_tables(&mut self, src: &dyn ReadAt, file_len: u64) -> Result<()> {
        self.chosen_mut().try_for_each(|c| c.expand(src, file_len))
    }

    /// Samples the chosen tracks hold.
    pub fn sample_count(&self) -> u64 {
        self.video
            .iter()
            .chain(self.audio.iter())
            .chain(self.more_audio.iter())
            .map(|c| c.samples.samples.len() as u64)
            .sum()
    }
}

pub fn read_moov(win: &mut Window, moov: &Located) -> Result<Movie> {
    let mut movie = Movie {
        timescale: 0,
        fragmented: false,
        trex: Vec::new(),
        video: None,
        audio: None,
        more_audio: Vec::new(),
        skipped: Vec::new(),
        text: Vec::new(),
    };
    read_movie_header(win, moov, &mut movie)?;
    let mut choice = Choice::default();
    let mut pos = moov.body;
    while let Some(child) = next_child(win, &mut pos, moov.end, moov.fourcc)? {
        if &child.fourcc.0 == b"trak" {
            choice.offer(trak::parse_trak(win, &child)?, movie.fragmented);
        }
    }
    check_declared(win.file_len(), &choice)?;
    movie.skipped = choice.skipped.into_list();
    // Chapter names are no subtitles.
    choice
        .text
        .retain(|t| !choice.chapters.contains(&t.track_id));
    movie.text = choice.text;
    movie.video = choice.video.map(Chosen::new);
    movie.audio = choice.audio.map(Chosen::new);
    movie.more_audio = choice.more_audio.into_iter().map(Chosen::new).collect();
    Ok(movie)
}

/// mvhd and mvex, before the traks: whether the movie is fragmented decides
/// whether a track without samples in its tables may still be chosen.
fn read_movie_header(win: &mut Window, moov: &Located, movie: &mut Movie) -> Result<()> {
    let mut pos = moov.body;
    while let Some(child) = next_child(win, &mut pos, moov.end, moov.fourcc)? {
        match &child.fourcc.0 {
            b"mvhd" => {
                let body = read_leaf(win, &child)?;
                let mut b = leaf_cursor(&body, &child);
                let (version, _) = b.full_box()?;
                b.skip(if version == 1 { 16 } else { 8 }, "mvhd times")?;
                movie.timescale = b.u32("timescale")?;
            }
            b"mvex" => {
                movie.fragmented = true;
                let body = read_leaf(win, &child)?;
                for grandchild in leaf_cursor(&body, &child).children() {
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
        return Err(Error::corrupt(
            moov.fourcc,
            moov.start,
            "movie has no 'mvhd' or its timescale is 0",
        ));
    }
    Ok(())
}

/// The chosen tracks' declared samples must together fit in the file's
/// budget: checked before any table is expanded.
fn check_declared(file_len: u64, choice: &Choice) -> Result<()> {
    let budget = sample_budget(file_len);
    let declared: u64 = choice
        .video
        .iter()
        .chain(choice.audio.iter())
        .chain(choice.more_audio.iter())
        .map(|t| t.declared_samples)
        .sum();
    if declared > budget {
        return Err(stbl::over_budget(declared, budget));
    }
    Ok(())
}

/// The first enabled video and audio tracks we can carry (the first
/// carriable one of a kind when none is enabled), and up to
/// [`MAX_MORE_AUDIO`] other audio tracks, chosen as tracks are met so that
/// no more than those are ever held.
#[derive(Default)]
struct Choice {
    video: Option<Trak>,
    audio: Option<Trak>,
    more_audio: Vec<Trak>,
    skipped: Skipped,
    text: Vec<Trak>,
    /// Tracks other tracks name as their chapters.
    chapters: Vec<u32>,
}

/// Subtitle tracks kept, at most.
pub const MAX_TEXT_TRACKS: usize = 16;

/// Whether `t` is a subtitle track: 3GPP timed text, QuickTime text or
/// WebVTT (ISO/IEC 14496-30) samples, in a text or subtitle handler.
fn is_text(t: &Trak) -> bool {
    matches!(&t.handler.0, b"sbtl" | b"text" | b"subt")
        && t.sample_entry
            .is_some_and(|e| matches!(&e.0, b"tx3g" | b"text" | b"wvtt"))
}

impl Choice {
    fn offer(&mut self, t: Trak, fragmented: bool) {
        if self.chapters.len() < MAX_TEXT_TRACKS {
            self.chapters.extend(t.chapters.iter().copied());
        }
        if is_text(&t) {
            // A fragmented movie's text may all be in its fragments.
            if self.text.len() < MAX_TEXT_TRACKS && (t.declared_samples > 0 || fragmented) {
                self.text.push(t);
            } else {
                self.skipped
                    .add(&t, "no samples, or too many subtitle tracks");
            }
            return;
        }
        let why = match &t.codec {
            Err(why) => Some(why.clone()),
            // A fragmented movie's samples may all be in its fragments.
            Ok(_) if t.declared_samples == 0 && !fragmented => Some("it has no samples".into()),
            Ok(_) => None,
        };
        if let Some(why) = why {
            self.skipped.add(&t, &why);
            return;
        }
        let is_video = matches!(t.codec, Ok(Codec::Video(_)));
        let slot = if is_video {
            &mut self.video
        } else {
            &mut self.audio
        };
        let other = match slot {
            None => {
                *slot = Some(t);
                return;
            }
            Some(current) if !current.enabled && t.enabled => slot.replace(t).expect("occupied"),
            Some(_) => t,
        };
        if is_video {
            self.skipped
                .add(&other, "only the first video track is packaged");
        } else if self.more_audio.len() < MAX_MORE_AUDIO {
            self.more_audio.push(other);
        } else {
            self.skipped.add(
                &other,
                &format!("at most {} audio tracks are packaged", MAX_MORE_AUDIO + 1),
            );
        }
    }
}

/// Reasons for tracks left out, for a warning; a file of thousands of
/// tracks gets the first few and a count.
#[derive(Default)]
pub struct Skipped {
    list: Vec<String>,
    more: usize,
}

/// Tracks whose reason is listed one by one.
pub const MAX_SKIPPED_LISTED: usize = 16;

impl Skipped {
    fn add(&mut self, t: &Trak, why: &str) {
        if self.list.len() < MAX_SKIPPED_LISTED {
            self.list.push(format!(
                "track {} ({}) left out: {why}",
                t.track_id, t.handler
            ));
        } else {
            self.more += 1;
        }
    }

    fn into_list(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list
                .push(format!("{} more tracks left out", self.more));
        }
        self.list
    }
}
