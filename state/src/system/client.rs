//! The CLI's and the SDK's end of the service's socket.

use super::wire::{self, Reply};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::os::unix::net::UnixStream;
use std::path::Path;

fn unreachable(socket: &Path, e: std::io::Error) -> Error {
    Error::State(format!(
        "cannot reach the genv service at {} ({e}): genv is installed in system mode, and its \
         service must run (as root: systemctl start genv)",
        crate::text::quote_path(socket)
    ))
}

/// Connects to the service at `socket`.
pub fn connect(socket: &Path) -> Result<UnixStream, Error> {
    UnixStream::connect(socket).map_err(|e| unreachable(socket, e))
}

/// Sends `req` and waits for its answer.
pub fn call<R: Serialize, T: for<'de> Deserialize<'de>>(
    socket: &Path,
    req: &R,
) -> Result<T, Error> {
    let mut s = connect(socket)?;
    call_on(&mut s, socket, req)
}

/// As [`call`], on an open connection (which stays open: a lock is held while it is).
pub fn call_on<R: Serialize, T: for<'de> Deserialize<'de>>(
    s: &mut UnixStream,
    socket: &Path,
    req: &R,
) -> Result<T, Error> {
    wire::send(s, req).map_err(|e| unreachable(socket, e))?;
    match wire::receive::<Reply>(s) {
        Ok(Some(r)) => r.into_result(),
        Ok(None) => Err(Error::State(format!(
            "the genv service at {} closed the connection without an answer",
            crate::text::quote_path(socket)
        ))),
        Err(e) => Err(unreachable(socket, e)),
    }
}
