//! casterpak, the caching stream packager: parses the command line and
//! hands over to one of `src/commands/`.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Package MP4 files into a static HLS directory (master, playlists, segments).
    Package(commands::package::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Package(args) => commands::package::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn init_logging(verbose: bool) {
    let default = if verbose {
        "casterpak=debug"
    } else {
        "casterpak=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}
