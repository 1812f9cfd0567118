//! casterpak driven as its users drive it: the binary, a temp dir per test,
//! and validators we did not write (ffprobe, ffmpeg, m3u8-rs).

mod browser;
mod cache_admin;
mod cmaf;
mod docs;
mod front_door;
mod hostile_files;
mod hostile_mutations;
mod http_client;
mod msod;
mod operations;
mod operator;
mod package;
mod prefetch;
mod preroll;
mod protection;
mod remote;
mod serve;
mod shared_media;
mod shield;
mod stores;
mod subtitles;
mod support;
