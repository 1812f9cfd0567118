//! One module per subcommand, each with its `Args` and `run`.

pub mod gc;
pub mod invalidate;
pub mod master;
pub mod origin;
pub mod package;
pub mod serve;
pub mod stat;

use std::io::Write;

/// Writes `text` to stdout; a closed pipe (`casterpak ... | head`) is not
/// an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
