//! The packager: turns an MP4 source into HLS playlists and MPEG-TS segments.
//! It knows nothing of HTTP, SQLite or the disk cache.

pub mod error;
pub mod hls;
pub mod index;
pub mod media;
pub mod mp4;
pub mod rendition;
pub mod segment;
pub mod ts;
#[doc(hidden)]
pub mod fuzz_regressions;
