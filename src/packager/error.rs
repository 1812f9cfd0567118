//! Errors of the packager: every one names what was wrong and where.

/// A four-character code, printed as text when it is ASCII.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl std::fmt::Display for FourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            write!(f, "'{}'", String::from_utf8_lossy(&self.0))
        } else {
            write!(f, "0x{:08x}", u32::from_be_bytes(self.0))
        }
    }
}

impl std::fmt::Debug for FourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not well-formed: a box, a table or a sample is wrong.
    #[error("corrupt media: {what} (box {fourcc} at byte {offset})")]
    Corrupt {
        fourcc: FourCc,
        offset: u64,
        what: String,
    },
    /// The file is well-formed but holds nothing we can package.
    #[error("unsupported media: {0}")]
    Unsupported(String),
    /// A request for something the source does not have (segment out of range).
    #[error("not found: {0}")]
    NotFound(String),
    /// Reading the file failed. The message includes the OS error, so it
    /// is not also a `source` (which would print it twice in a chain).
    #[error("I/O error: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl Error {
    pub fn corrupt(fourcc: FourCc, offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupt {
            fourcc,
            offset,
            what: what.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
