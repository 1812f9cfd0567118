//! casterpak, the caching stream packager: parses the command line and
//! hands over to one of `src/commands/`.

use std::process::ExitCode;

use clap::{Arg, CommandFactory, FromArgMatches, Parser, Subcommand};

use casterpak::commands;
use casterpak::config::{CommonArgs, Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "casterpak",
    version,
    about = "The caching stream packager: MP4 renditions to HLS",
    disable_help_subcommand = true
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
    /// Print a signed-URL token that serve accepts (tokens.key) for a path.
    Token(commands::token::Args),
    /// Print a shell completion script (the files in completions/ are made so).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print a man page: casterpak(1), or casterpak-SUBCOMMAND(1) (the files in man/ are made so).
    #[command(hide = true)]
    Man { subcommand: Option<String> },
}

/// `--now UNIX_SECONDS`: the cache's clock, for tests of TTLs and eviction.
/// Added only when parsing, so completions and man pages never offer it.
const NOW: &str = "now";

fn main() -> ExitCode {
    let matches = Cli::command()
        .arg(
            Arg::new(NOW)
                .long(NOW)
                .global(true)
                .hide(true)
                .value_parser(clap::value_parser!(i64)),
        )
        .get_matches();
    let now = matches.get_one::<i64>(NOW).copied();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let clock = casterpak::cache::clock_at(now);
    let result = match cli.command {
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "casterpak", &mut out);
            commands::print(&String::from_utf8_lossy(&out)).map(|()| ExitCode::SUCCESS)
        }
        Command::Man { subcommand } => {
            commands::docs::man_page(Cli::command(), subcommand.as_deref())
                .and_then(|page| commands::print(&page))
                .map(|()| ExitCode::SUCCESS)
        }
        command => Config::load(&cli.common).and_then(|config| {
            init_logging(cli.verbose, default_level, config.log.format);
            match command {
                Command::Package(args) => commands::package::run(args, config, clock),
                Command::Serve(args) => commands::serve::run(args, &cli.common, config, clock),
                Command::Gc(args) => commands::gc::run(args, &config, clock),
                Command::Stat(args) => commands::stat::run(args, &config, clock),
                Command::Invalidate(args) => commands::invalidate::run(args, &config, clock),
                Command::Master(args) => commands::master::run(args, config, clock),
                Command::Token(args) => commands::token::run(args, &config, clock.now()),
                Command::Completions { .. } | Command::Man { .. } => unreachable!("matched above"),
            }
        }),
    };
    result.unwrap_or_else(print_or_fail_err)
}

fn print_or_fail_err(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

fn init_logging(verbose: bool, level: &str, format: LogFormat) {
    let default = if verbose {
        "casterpak=debug,access=debug".to_string()
    } else {
        format!("casterpak={level},access={level}")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => logger
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One object a line: the time, level, message (`fields`), and the
        // request's id (`span`) in a request's lines.
        LogFormat::Json => logger
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
