//! `casterpak token PATH --ttl 1h`: prints a token that `serve` accepts for
//! PATH (see `src/tokens.rs`), signed with `tokens.key`, for scripts and
//! tests. A web application mints its own the same way (README).

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::bail;

use crate::config::Config;
use crate::tokens::{read_key, Grant, Signer};

#[derive(clap::Args)]
pub struct Args {
    /// The URL path the token is for, e.g. `/i/films/a.mp4/master.m3u8`;
    /// with `--acl`, only a label (the token is for the pattern).
    #[arg(value_name = "PATH")]
    path: String,
    /// How long the token is good for: 90s, 30m, 12h, 3d, or seconds.
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration_arg)]
    ttl: u64,
    /// Path patterns the token is good for, `!`-separated, `*` any run of
    /// characters (e.g. `/i/films/a.mp4/*`); default: PATH itself.
    #[arg(long, value_name = "PATTERN")]
    acl: Option<String>,
    /// The only client address the token is good for.
    #[arg(long, value_name = "ADDR")]
    ip: Option<IpAddr>,
    /// Signed data: `&`-separated `name=value` pairs the request's query
    /// may then use, e.g. `preroll=0` (with `preroll.param_signed`).
    #[arg(long, value_name = "PAIRS")]
    data: Option<String>,
}

pub fn run(args: Args, config: &Config, now: i64) -> anyhow::Result<ExitCode> {
    if config.tokens.key.is_empty() {
        bail!("tokens.key is not set: there is nothing to sign with");
    }
    let acl = args.acl.unwrap_or(args.path);
    let acl: Vec<String> = acl.split('!').map(str::to_string).collect();
    if let Some(bad) = acl.iter().find(|p| !p.starts_with('/')) {
        bail!("{bad:?}: a path pattern starts with '/'");
    }
    if let Some(data) = args.data.as_deref().filter(|d| d.contains('~')) {
        bail!("{data:?}: data cannot hold '~' (it separates a token's fields)");
    }
    let now = u64::try_from(now).unwrap_or(0);
    let grant = Grant {
        ip: args.ip,
        start: None,
        expiry: now.saturating_add(args.ttl),
        acl,
        data: args.data,
    };
    let signer = Signer::new(read_key("tokens.key", &config.tokens.key)?);
    super::print(&format!("{}\n", signer.mint(&grant)))?;
    Ok(ExitCode::SUCCESS)
}
