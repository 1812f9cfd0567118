//! casterpak, the caching stream packager: parses the command line and
//! hands over to one of `src/commands/`.

mod cache;
mod commands;
mod config;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::{CommonArgs, Config};

#[derive(Parser)]
#[command(
    name = "casterpak",
    version,
    about = "The caching stream packager: MP4 renditions to HLS"
)]
struct Cli {
    /// More log detail on stderr (same as RUST_LOG=casterpak=debug).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Package MP4 files into a static HLS directory (master, playlists, segments).
    Package(commands::package::Args),
    /// Serve HLS on demand from MP4 files under the media root, through the cache.
    Serve(commands::serve::Args),
    /// Delete cached objects past their TTL or over the size cap, and orphans.
    Gc(commands::gc::Args),
    /// Show what the cache holds.
    Stat(commands::stat::Args),
    /// Expire (or delete) cached objects by source, age or all.
    Invalidate(commands::invalidate::Args),
    /// Print the master playlist serve would answer for a file or csmil path.
    Master(commands::master::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    init_logging(cli.verbose, default_level);
    let clock = cli.common.clock();
    let result = Config::load(&cli.common).and_then(|config| match cli.command {
        Command::Package(args) => commands::package::run(args, config, clock),
        Command::Serve(args) => commands::serve::run(args, config, clock),
        Command::Gc(args) => commands::gc::run(args, &config, clock),
        Command::Stat(args) => commands::stat::run(args, &config, clock),
        Command::Invalidate(args) => commands::invalidate::run(args, &config, clock),
        Command::Master(args) => commands::master::run(args, config, clock),
    });
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn init_logging(verbose: bool, level: &str) {
    let default = if verbose {
        "casterpak=debug,access=debug".to_string()
    } else {
        format!("casterpak={level},access={level}")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
