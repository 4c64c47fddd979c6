//! `genv daemon`: the system mode's service, run by root (its systemd unit). The only writer of
//! the tables: every request is one `Genv` operation for the caller the kernel names, checked as
//! the service checks callers (ops.rs: processes of their own, per-user limits); device locks
//! are kept here; the machine's GPUs are read here, from NVML.

use super::locks::LockTable;
use super::proto::Request;
use super::server::{self, Peer};
use super::wire::{self, Reply};
use crate::devices;
use crate::fsafe::Dir;
use crate::layout::{LEDGER_DIR, STATE_FILE};
use crate::mode::Mode;
use crate::ops::{Genv, ServiceRules};
use crate::store::Store;
use crate::Error;
use serde::Serialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

/// The service's directories: root's, readable by all, writable by root alone.
const SERVICE_DIR_MODE: u32 = 0o755;
/// The socket: everyone may connect (the kernel tells the service who did).
const SOCKET_MODE: u32 = 0o666;
/// A file only root may open: holding its lock means "the service runs".
const SERVICE_LOCK: &str = "service.lock";

/// What `Hello` answers.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Hello {
    pub version: String,
    pub mode: String,
    pub state_dir: String,
}

fn root_only() -> Result<(), Error> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Err(Error::Permission(
            "genv daemon is the system mode's service and runs as root (its systemd unit starts it)"
                .into(),
        ));
    }
    Ok(())
}

/// A configuration file only root controls: anyone who could change it could point the service
/// at files of their choosing.
fn check_config(path: &Path) -> Result<(), Error> {
    let m = std::fs::symlink_metadata(path).map_err(|e| {
        Error::State(format!(
            "cannot read the genv configuration {}: {e}",
            crate::text::quote_path(path)
        ))
    })?;
    if !m.file_type().is_file() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(Error::Permission(format!(
            "the genv configuration {} must be a regular file owned by root and writable by \
             root alone (it is uid {} with mode {:04o})",
            crate::text::quote_path(path),
            m.uid(),
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Makes `path` (and what is missing above it) root's, mode 0755, and opens it checked.
pub fn root_dir(path: &Path) -> Result<Dir, Error> {
    if !path.exists() {
        std::fs::create_dir_all(path).map_err(|e| {
            Error::State(format!(
                "cannot create {}: {e}",
                crate::text::quote_path(path)
            ))
        })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SERVICE_DIR_MODE)).map_err(
            |e| {
                Error::State(format!(
                    "cannot set the mode of {}: {e}",
                    crate::text::quote_path(path)
                ))
            },
        )?;
    }
    let dir = Dir::open(path, false)?;
    if dir.uid != 0 || dir.mode & 0o022 != 0 {
        return Err(Error::Permission(format!(
            "{} must be root's and writable by root alone for the system mode (it is uid {} with \
             mode {:04o})",
            crate::text::quote_path(path),
            dir.uid,
            dir.mode
        )));
    }
    Ok(dir)
}

/// Runs the service of `mode` until it is stopped.
pub fn run(mode: &Mode) -> Result<(), Error> {
    root_only()?;
    let Mode::System {
        config,
        state_dir,
        socket,
        limits,
        policy,
    } = mode
    else {
        return Err(Error::State(
            "genv is not installed in system mode (no system configuration): nothing to serve; \
             see `genv admin install`"
                .into(),
        ));
    };
    check_config(config)?;
    let dir = root_dir(state_dir)?;
    dir.subdir(LEDGER_DIR, Some(SERVICE_DIR_MODE))?;
    // One service per state.
    let lock = dir
        .create_new(SERVICE_LOCK, 0o600)
        .or_else(|_| {
            dir.open_file(SERVICE_LOCK, false)
                .map_err(|_| std::io::Error::other("cannot open the service lock"))
        })
        .map_err(|e| Error::State(format!("cannot open the service lock: {e}")))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(Error::State(format!(
            "another genv daemon serves {} already",
            crate::text::quote_path(state_dir)
        )));
    }
    let store = Store::open_service(&state_dir.join(STATE_FILE))?;
    let genv = Arc::new(Genv::service(
        store,
        ServiceRules {
            limits: limits.clone(),
            quotas: Box::new(policy.quotas.clone()),
        },
    ));
    let listener = listen(socket)?;
    let table = Arc::new(LockTable::default());
    let hello = Arc::new(Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        mode: "system".into(),
        state_dir: state_dir.display().to_string(),
    });
    eprintln!(
        "genv daemon: serving {} on {}",
        state_dir.display(),
        socket.display()
    );
    let handler: Arc<server::Handler> = Arc::new(move |peer: &Peer, s: UnixStream| {
        handle(&genv, &table, &hello, peer, s);
    });
    server::serve(listener, limits.max_connections_per_user, handler)
}

/// The socket, made anew: its directory root's, the socket connectable by all.
fn listen(socket: &Path) -> Result<UnixListener, Error> {
    let parent = socket.parent().unwrap_or(Path::new("/"));
    root_dir(parent)?;
    match std::fs::symlink_metadata(socket) {
        // A socket left by a service that ended: ours to replace (the directory is root's).
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            let _ = std::fs::remove_file(socket);
        }
        Ok(_) => {
            return Err(Error::State(format!(
                "{} exists and is not a socket; remove it",
                crate::text::quote_path(socket)
            )))
        }
        Err(_) => {}
    }
    let l = UnixListener::bind(socket).map_err(|e| {
        Error::State(format!(
            "cannot listen on {}: {e}",
            crate::text::quote_path(socket)
        ))
    })?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |e| {
            Error::State(format!(
                "cannot set the mode of {}: {e}",
                crate::text::quote_path(socket)
            ))
        },
    )?;
    Ok(l)
}

fn handle(genv: &Genv, table: &LockTable, hello: &Hello, peer: &Peer, mut s: UnixStream) {
    let req = match wire::receive::<Request>(&s) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            let _ = wire::send(
                &mut s,
                &Reply::from_result::<()>(Err(Error::Input(format!(
                    "the genv service could not read the request: {e}"
                )))),
            );
            return;
        }
    };
    let gpus = || devices::read_gpus();
    let reply = match req {
        Request::Hello => Reply::from_result(Ok(hello)),
        Request::Lock { eid } => {
            hold_lock(genv, table, peer, &eid, s);
            return;
        }
        other => genv.serve(peer, &gpus, other),
    };
    let _ = wire::send(&mut s, &reply);
}

/// `genv lock`: takes the environment's devices for the client, answers what it holds, and
/// holds them until the client closes the connection (however it ends).
fn hold_lock(genv: &Genv, table: &LockTable, peer: &Peer, eid: &str, mut s: UnixStream) {
    let (key, devices) = match genv.lockable(peer, eid) {
        Ok(v) => v,
        Err(e) => {
            let _ = wire::send(&mut s, &Reply::from_result::<()>(Err(e)));
            return;
        }
    };
    let mut devices = devices;
    devices.sort_by_key(|d| d.0);
    let uuids: Vec<String> = devices.iter().map(|d| d.1.clone()).collect();
    let mut gone = || client_gone(&s);
    let Some(held) = table.acquire(&key, &uuids, &mut gone) else {
        return;
    };
    let indices: Vec<u32> = devices.iter().map(|d| d.0).collect();
    if wire::send(&mut s, &Reply::from_result(Ok(indices))).is_err() {
        return;
    }
    // Held while the client is there: it sends nothing more, so a read returns at its end.
    let _ = s.set_read_timeout(None);
    let mut buf = [0u8; 64];
    while matches!(std::io::Read::read(&mut s, &mut buf), Ok(n) if n > 0) {}
    drop(held);
}

/// Whether the client of `s` closed its end (a peek that finds the end of the stream).
fn client_gone(s: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    match rustix::net::recv(
        s,
        &mut b,
        rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
    ) {
        Ok((0, _)) => true,
        Ok(_) => false,
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => false,
        Err(_) => true,
    }
}
