//! casterpak, the caching stream packager: parses the command line and
//! hands over to one of `src/commands/`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use casterpak::commands;
use casterpak::config::{CommonArgs, Config};

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
    /// Print a shell completion script (the files in completions/ are made so).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print a man page: casterpak(1), or casterpak-SUBCOMMAND(1) (the files in man/ are made so).
    #[command(hide = true)]
    Man { subcommand: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    init_logging(cli.verbose, default_level);
    match cli.command {
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "casterpak", &mut out);
            return print_or_fail(&String::from_utf8_lossy(&out));
        }
        Command::Man { subcommand } => return man_page(subcommand.as_deref()),
        _ => {}
    }
    let clock = cli.common.clock();
    let result = Config::load(&cli.common).and_then(|config| match cli.command {
        Command::Package(args) => commands::package::run(args, config, clock),
        Command::Serve(args) => commands::serve::run(args, config, clock),
        Command::Gc(args) => commands::gc::run(args, &config, clock),
        Command::Stat(args) => commands::stat::run(args, &config, clock),
        Command::Invalidate(args) => commands::invalidate::run(args, &config, clock),
        Command::Master(args) => commands::master::run(args, config, clock),
        Command::Completions { .. } | Command::Man { .. } => unreachable!("handled above"),
    });
    result.unwrap_or_else(print_or_fail_err)
}

fn man_page(subcommand: Option<&str>) -> ExitCode {
    let mut command = Cli::command();
    if let Some(name) = subcommand {
        let Some(sub) = command.find_subcommand(name) else {
            return print_or_fail_err(anyhow::anyhow!("no subcommand {name:?}"));
        };
        command = sub.clone().name(format!("casterpak-{name}"));
    }
    let mut out = Vec::new();
    match clap_mangen::Man::new(command).render(&mut out) {
        Ok(()) => print_or_fail(&String::from_utf8_lossy(&out)),
        Err(e) => print_or_fail_err(e.into()),
    }
}

fn print_or_fail(text: &str) -> ExitCode {
    commands::print(text).map_or_else(print_or_fail_err, |()| ExitCode::SUCCESS)
}

fn print_or_fail_err(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
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
