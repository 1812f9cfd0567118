//! casterpak's library: the packager, shared by every subcommand of the
//! binary and by the fuzz targets.

pub mod packager;
