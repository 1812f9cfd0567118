//! The packager: turns an MP4 source into HLS playlists and MPEG-TS segments.
//! It knows nothing of HTTP, SQLite or the disk cache.

pub mod captions;
pub mod cmaf;
pub mod encrypt;
pub mod error;
pub mod fmp4;
#[doc(hidden)]
pub mod fuzz_regressions;
pub mod hls;
pub mod index;
pub mod index_codec;
pub mod media;
pub mod mp4;
pub mod rendition;
pub mod segment;
pub mod subtitles;
pub mod timeline;
pub mod ts;
pub mod url;
pub mod validate;

/// Version of what the packager writes. Bump it whenever the bytes of any
/// playlist or segment change: it is part of every cache key and ETag, so
/// old cached objects are then neither served nor validated.
/// 3: segments start at verified random access points only, exact TS
/// layout for 1- and 2-byte NAL lengths, INDEPENDENT-SEGMENTS only when true.
pub const FORMAT_VERSION: u32 = 3;

/// Whether work over a long file's samples is shared with a second thread
/// (two halves at once: the time of a first request for a long file). The
/// result never depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// From a size on where the second thread pays for itself.
    Auto,
    /// Always one thread (tests compare it with `Both`).
    One,
    /// Always two, however little work (tests).
    Both,
}

impl Threads {
    /// Whether `work` items, of which `threshold` pay for a thread, go to two.
    pub fn share(self, work: usize, threshold: usize) -> bool {
        match self {
            Threads::Auto => work >= threshold,
            Threads::One => false,
            Threads::Both => work >= 2,
        }
    }

    /// `f` over `items`, in two halves at once when [`Threads::share`]
    /// says so; the results in order.
    pub fn map_halves<T: Sync, R: Send>(
        self,
        items: &[T],
        threshold: usize,
        f: impl Fn(&[T]) -> R + Sync,
    ) -> (R, Option<R>) {
        if !self.share(items.len(), threshold) {
            return (f(items), None);
        }
        let (first, second) = items.split_at(items.len() / 2);
        std::thread::scope(|scope| {
            let later = scope.spawn(|| f(second));
            let done = f(first);
            let later = later
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (done, Some(later))
        })
    }
}
