//! The service's wire format: one JSON request per connection, one JSON line back (`genv lock`
//! keeps its connection open: the lock is held while it is). Requests carry no identity: the
//! service takes the caller's uid and pid from the kernel (`SO_PEERCRED`).

use crate::Error;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The longest request or response line accepted: far more than any legitimate one (a
/// configuration, an environment list), little enough that nobody can make the service buffer
/// without bound.
pub const MAX_LINE: usize = 4 << 20;
/// How long the service waits for a request to arrive whole.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An error as it crosses the wire: the variant of [`Error`] and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub kind: String,
    pub message: String,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        let kind = match e {
            Error::Input(_) => "input",
            Error::State(_) => "state",
            Error::Nvml(_) => "nvml",
            Error::Permission(_) => "permission",
            Error::Unavailable(_) => "unavailable",
            Error::NotConfigured(_) => "not_configured",
            Error::NotActive => "not_active",
            Error::AlreadyActive => "already_active",
        };
        WireError {
            kind: kind.into(),
            message: e.to_string(),
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Error {
        match w.kind.as_str() {
            "input" => Error::Input(w.message),
            "nvml" => Error::Nvml(w.message),
            "permission" => Error::Permission(w.message),
            "unavailable" => Error::Unavailable(w.message),
            "not_configured" => Error::NotConfigured(w.message),
            "not_active" => Error::NotActive,
            "already_active" => Error::AlreadyActive,
            _ => Error::State(w.message),
        }
    }
}

/// What comes back: a value, or an error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(serde_json::Value),
    Err(WireError),
}

impl Reply {
    pub fn from_result<T: Serialize>(r: Result<T, Error>) -> Reply {
        match r {
            Ok(v) => match serde_json::to_value(v) {
                Ok(v) => Reply::Ok(v),
                Err(e) => Reply::Err(WireError::from(&Error::State(format!(
                    "cannot encode the answer: {e}"
                )))),
            },
            Err(e) => Reply::Err(WireError::from(&e)),
        }
    }

    pub fn into_result<T: for<'de> Deserialize<'de>>(self) -> Result<T, Error> {
        match self {
            Reply::Ok(v) => serde_json::from_value(v).map_err(|e| {
                Error::State(format!(
                    "the genv service sent an answer this genv cannot read: {e}"
                ))
            }),
            Reply::Err(w) => Err(w.into()),
        }
    }
}

/// Writes `v` as one line.
pub fn send<T: Serialize>(s: &mut UnixStream, v: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    s.flush()
}

/// Reads one line (at most [`MAX_LINE`] bytes) and decodes it. `Ok(None)` at end of stream.
pub fn receive<T: for<'de> Deserialize<'de>>(s: &UnixStream) -> std::io::Result<Option<T>> {
    let mut r = BufReader::new(s.take(MAX_LINE as u64 + 1));
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.len() > MAX_LINE || line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "request too long or cut short",
        ));
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
