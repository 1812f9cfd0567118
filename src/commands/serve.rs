//! `casterpak serve`: the HTTP origin ([`crate::server`]) over the media
//! root and the cache of the configuration.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cache::Clock;
use crate::config::{CommonArgs, Config};
use crate::origin::Origin;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Address and port to listen on (server.listen); port 0 picks a free one.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Requests answered at the same time (server.workers).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

pub fn run(
    args: Args,
    common: &CommonArgs,
    config: Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ExitCode> {
    let config = with_flags(config, &args);
    let root = &config.media.root;
    if !root.is_dir() {
        let why = if root.exists() {
            "not a directory"
        } else {
            "no such directory"
        };
        anyhow::bail!("media root {}: {why}", root.display());
    }
    let cache = super::open_cache(&config, clock)?;
    let origin = Arc::new(Origin::new(config, cache)?);
    let shown = Arc::clone(&origin);
    // SIGHUP: the configuration read again as at start, flags included.
    let (common, flags) = (common.clone(), args.clone());
    let reread = move || Config::load(&common).map(|config| with_flags(config, &flags));
    crate::server::run(origin, reread, |addr, max_connections| {
        super::print(&format!(
            "casterpak serving {} at http://{addr}{} (at most {max_connections} connections)\n",
            shown.config().media.root.display(),
            shown.config().server.prefix
        ))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `config` with serve's own flags applied.
fn with_flags(mut config: Config, args: &Args) -> Config {
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    if let Some(workers) = args.workers {
        config.server.workers = workers.max(1);
    }
    config
}
