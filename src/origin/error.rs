//! What can go wrong answering a request, by kind. The origin knows no
//! HTTP: `serve` turns each kind into a status, in one place.

use crate::cache::remote::RemoteError;
use crate::cache::{CacheError, Failure, SourceId};
use crate::packager::error::Error as PackagerError;
use crate::packager::url::UrlError;

#[derive(Clone, Debug, thiserror::Error)]
pub enum OriginError {
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// No such source, rendition or segment.
    #[error("{0}")]
    NotFound(String),
    /// Unsupported or corrupt media.
    #[error("{0}")]
    Unprocessable(String),
    /// Try again soon: the source is being written, or another request has
    /// been making this object for too long.
    #[error("{reason}")]
    Unavailable {
        reason: String,
        retry_after_seconds: u64,
    },
    /// Our failure, or the machine's (a disk error).
    #[error("{0}")]
    Internal(String),
    /// A remote store failed or refused.
    #[error("{0}")]
    BadGateway(String),
    /// A remote store did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// Not served in this form: a stream protected with `sample-aes` as
    /// MPEG-TS.
    #[error("{0}")]
    Forbidden(String),
}

/// `Retry-After` of a source that is changing or an object still being made.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// `Retry-After` of an archived object being restored (restores take
/// minutes to hours).
pub const RESTORE_RETRY_AFTER_SECONDS: u64 = 60;

impl From<RemoteError> for OriginError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::NotFound(reason) => {
                // The store's reason (403 or 404) goes to the log, not to
                // the client.
                tracing::info!("{reason}");
                let name = reason.split(": ").next().unwrap_or_default();
                OriginError::NotFound(format!("no such file: {name}"))
            }
            RemoteError::Down(reason) | RemoteError::Refused(reason) => {
                OriginError::BadGateway(reason)
            }
            RemoteError::TimedOut(reason) => OriginError::GatewayTimeout(reason),
            RemoteError::Changed(reason) => OriginError::Unavailable {
                reason,
                retry_after_seconds: 1,
            },
            RemoteError::Archived(reason) => OriginError::Unavailable {
                reason,
                retry_after_seconds: RESTORE_RETRY_AFTER_SECONDS,
            },
        }
    }
}

impl From<UrlError> for OriginError {
    fn from(e: UrlError) -> Self {
        match e {
            UrlError::Malformed(m) => OriginError::BadRequest(m),
            UrlError::NotFound(m) => OriginError::NotFound(m),
        }
    }
}

impl From<CacheError> for OriginError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::NotFound(path) => OriginError::NotFound(format!("no such file: {path}")),
            CacheError::Busy(_) => OriginError::Unavailable {
                reason: e.to_string(),
                retry_after_seconds: RETRY_AFTER_SECONDS,
            },
            CacheError::Remote(e) => e.into(),
            other => OriginError::Internal(other.to_string()),
        }
    }
}

impl From<Failure<OriginError>> for OriginError {
    fn from(f: Failure<OriginError>) -> Self {
        match f {
            Failure::Make(e) => e,
            Failure::Cache(e) => e.into(),
        }
    }
}

/// A packager error about `source`, by kind.
pub fn packager_error(source: &SourceId, e: PackagerError) -> OriginError {
    match e {
        PackagerError::NotFound(m) => OriginError::NotFound(m),
        PackagerError::Io(e) => match e.get_ref().and_then(|e| e.downcast_ref::<RemoteError>()) {
            Some(remote) => remote.clone().into(),
            None => OriginError::Internal(format!("{}: {e}", source.rel)),
        },
        other => OriginError::Unprocessable(format!("{}: {other}", source.rel)),
    }
}
