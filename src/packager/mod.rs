//! The packager: turns an MP4 source into HLS playlists and MPEG-TS segments.
//! It knows nothing of HTTP, SQLite or the disk cache.

pub mod cmaf;
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
pub mod ts;
pub mod url;
pub mod validate;

/// Version of what the packager writes. Bump it whenever the bytes of any
/// playlist or segment change: it is part of every cache key and ETag, so
/// old cached objects are then neither served nor validated.
/// 3: segments start at verified random access points only, exact TS
/// layout for 1- and 2-byte NAL lengths, INDEPENDENT-SEGMENTS only when true.
pub const FORMAT_VERSION: u32 = 3;
