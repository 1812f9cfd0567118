//! casterpak, the caching stream packager, as a library: the binary
//! (`src/main.rs`) parses the command line and calls into [`commands`]; the
//! fuzz targets call the parsers directly.
//!
//! - [`packager`]: media in, bytes out (MP4 reader, segmenter, TS writer,
//!   playlists, URL grammar). No HTTP, no SQLite.
//! - [`cache`]: the disk cache and its SQLite index, and source files. No
//!   MP4 boxes.
//! - [`origin`]: a URL path in, an object out, through the cache; shared by
//!   `serve`, `master` and pre-warming.
//! - [`server`]: the HTTP origin around it, with the limits of a server
//!   facing the internet.
//! - [`commands`]: one module per subcommand.
//! - [`tokens`]: signed URLs (minted by `casterpak token`, checked by
//!   `serve`).

pub mod cache;
pub mod commands;
pub mod config;
pub mod dates;
pub mod metrics;
pub mod origin;
pub mod packager;
pub mod server;
pub mod tokens;
