//! The service's socket: who is calling (from the kernel, never from the request), how many
//! connections each user may hold, and a thread per connection so that a slow or stalled client
//! (or one holding a device lock) never delays anyone else.

use super::wire::{self, Reply};
use crate::Error;
use std::collections::HashMap;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

/// The caller of a request, as the kernel tells it (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Peer {
    pub fn of(s: &UnixStream) -> std::io::Result<Peer> {
        let c = rustix::net::sockopt::socket_peercred(s)
            .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))?;
        Ok(Peer {
            uid: c.uid.as_raw(),
            gid: c.gid.as_raw(),
            pid: c.pid.as_raw_nonzero().get() as u32,
        })
    }
}

/// What a request handler does with the connection: answer once and close, or answer and keep
/// it (a held lock), returning when the client is gone.
pub type Handler = dyn Fn(&Peer, UnixStream) + Send + Sync;

/// Open connections per uid, to bound what one user can hold.
#[derive(Default)]
struct Counts(Mutex<HashMap<u32, u32>>);

impl Counts {
    fn enter(&self, uid: u32, max: u32) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(uid).or_insert(0);
        // Root (the administrator, and the service's own tests) is not limited.
        if uid != 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }
    fn leave(&self, uid: u32) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&uid);
            }
        }
    }
}

/// Accepts connections on `listener` for ever, each on its own thread, at most
/// `max_per_user` at once per user.
pub fn serve(
    listener: UnixListener,
    max_per_user: u32,
    handler: Arc<Handler>,
) -> Result<(), Error> {
    let counts = Arc::new(Counts::default());
    for conn in listener.incoming() {
        let s = match conn {
            Ok(s) => s,
            // A client that went away between connect and accept, or a shortage of
            // descriptors: the next accept may work.
            Err(_) => continue,
        };
        let Ok(peer) = Peer::of(&s) else {
            continue;
        };
        if !counts.enter(peer.uid, max_per_user) {
            let mut s = s;
            let _ = wire::send(
                &mut s,
                &Reply::from_result::<()>(Err(Error::Unavailable(format!(
                    "the genv service refuses more than {max_per_user} connections of one user \
                     at once (uid {}): end some of your `genv lock` or waiting commands",
                    peer.uid
                )))),
            );
            continue;
        }
        let (mine, handler) = (counts.clone(), handler.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("genv-conn-{}", peer.uid))
            .stack_size(256 << 10)
            .spawn(move || {
                let _ = s.set_read_timeout(Some(wire::REQUEST_TIMEOUT));
                let _ = s.set_write_timeout(Some(wire::REQUEST_TIMEOUT));
                // A panic in one request must not take the service down.
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&peer, s)));
                mine.leave(peer.uid);
            });
        if spawned.is_err() {
            // No thread for it (the connection went with the closure and is closed).
            counts.leave(peer.uid);
        }
    }
    Ok(())
}
