//! Device locks in system mode (`genv lock`, `genv.sdk.lock()`), kept by the service: no lock
//! file exists that another user could hold. A client holds its devices while its connection is
//! open; the kernel closes the connection when the client ends, however it ends.
//!
//! Per device: the environment holding it (with how many of its processes), and a queue of
//! waiters served in arrival order. Processes of the holding environment join it at once while
//! no other environment waits; once one waits, they queue behind it, so an environment that
//! keeps re-taking a device cannot starve another. Devices are taken in the order given
//! (ascending NVML index), so two lockers cannot each hold what the other waits for.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How often a waiter looks whether its client went away.
const GONE_POLL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Dev {
    /// The holding environment and how many of its processes hold the device.
    holder: Option<(String, u32)>,
    /// Waiting (ticket, environment), first come first served.
    queue: VecDeque<(u64, String)>,
}

#[derive(Default)]
struct Inner {
    devs: HashMap<String, Dev>,
    next_ticket: u64,
}

/// The service's table of device locks.
#[derive(Default)]
pub struct LockTable {
    m: Mutex<Inner>,
    cv: Condvar,
}

/// Devices held by one client; dropping it releases them.
pub struct Held<'a> {
    table: &'a LockTable,
    env: String,
    devices: Vec<String>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut g = self.table.lock();
        for d in &self.devices {
            if let Some(dev) = g.devs.get_mut(d) {
                if let Some((e, n)) = &mut dev.holder {
                    if *e == self.env {
                        *n -= 1;
                        if *n == 0 {
                            dev.holder = None;
                        }
                    }
                }
                if dev.holder.is_none() && dev.queue.is_empty() {
                    g.devs.remove(d);
                }
            }
        }
        drop(g);
        self.table.cv.notify_all();
    }
}

impl LockTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `devices` (in the order given) for environment `env`, waiting while other
    /// environments hold them. `gone` is asked while waiting; when it says the client went
    /// away, what was taken is released and `None` is returned.
    pub fn acquire(
        &self,
        env: &str,
        devices: &[String],
        gone: &mut dyn FnMut() -> bool,
    ) -> Option<Held<'_>> {
        let mut held = Held {
            table: self,
            env: env.to_string(),
            devices: Vec::new(),
        };
        for d in devices {
            if !self.acquire_one(env, d, gone) {
                return None; // `held` releases what was taken
            }
            held.devices.push(d.clone());
        }
        Some(held)
    }

    fn acquire_one(&self, env: &str, d: &str, gone: &mut dyn FnMut() -> bool) -> bool {
        let mut g = self.lock();
        let ticket = g.next_ticket;
        g.next_ticket += 1;
        let dev = g.devs.entry(d.to_string()).or_default();
        match &mut dev.holder {
            // Join the environment's other processes while nobody else waits.
            Some((e, n)) if e == env && dev.queue.is_empty() => {
                *n += 1;
                return true;
            }
            None if dev.queue.is_empty() => {
                dev.holder = Some((env.to_string(), 1));
                return true;
            }
            _ => dev.queue.push_back((ticket, env.to_string())),
        }
        loop {
            let dev = g.devs.entry(d.to_string()).or_default();
            let first = dev.queue.front().map(|q| q.0) == Some(ticket);
            let mine_holds = matches!(&dev.holder, Some((e, _)) if e == env);
            if first && (dev.holder.is_none() || mine_holds) {
                dev.queue.pop_front();
                match &mut dev.holder {
                    Some((_, n)) => *n += 1,
                    None => dev.holder = Some((env.to_string(), 1)),
                }
                drop(g);
                // The next waiter may be of the same environment: let it look.
                self.cv.notify_all();
                return true;
            }
            let (g2, _) = self
                .cv
                .wait_timeout(g, GONE_POLL)
                .unwrap_or_else(|e| e.into_inner());
            g = g2;
            if gone() {
                if let Some(dev) = g.devs.get_mut(d) {
                    dev.queue.retain(|q| q.0 != ticket);
                }
                drop(g);
                self.cv.notify_all();
                return false;
            }
        }
    }

    /// (holding environment, its holders, waiters) of device `d`, for tests and the log.
    pub fn state_of(&self, d: &str) -> (Option<(String, u32)>, usize) {
        let g = self.lock();
        match g.devs.get(d) {
            Some(dev) => (dev.holder.clone(), dev.queue.len()),
            None => (None, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;

    fn never() -> impl FnMut() -> bool {
        || false
    }

    #[test]
    fn environments_exclude_each_other_share_within_and_are_served_in_order() {
        let t = Arc::new(LockTable::default());
        let d = vec!["GPU-0".to_string()];
        let a1 = t.acquire("a", &d, &mut never()).unwrap();
        let a2 = t.acquire("a", &d, &mut never()).unwrap();
        assert_eq!(t.state_of("GPU-0"), (Some(("a".into(), 2)), 0));
        // b waits for both holders of a.
        let (tx, rx) = mpsc::channel();
        let (t2, d2) = (t.clone(), d.clone());
        let b = std::thread::spawn(move || {
            let h = t2.acquire("b", &d2, &mut || false).unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(h);
        });
        while t.state_of("GPU-0").1 == 0 {
            std::thread::yield_now();
        }
        // A third process of a now queues behind b: a cannot starve b by re-taking.
        let (tx3, rx3) = mpsc::channel();
        let (t3, d3) = (t.clone(), d.clone());
        let a3 = std::thread::spawn(move || {
            let h = t3.acquire("a", &d3, &mut || false).unwrap();
            tx3.send(()).unwrap();
            drop(h);
        });
        while t.state_of("GPU-0").1 < 2 {
            std::thread::yield_now();
        }
        drop(a1);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(a2);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // b got it before a's third process.
        assert!(rx3.try_recv().is_err());
        b.join().unwrap();
        rx3.recv_timeout(Duration::from_secs(5)).unwrap();
        a3.join().unwrap();
        assert_eq!(t.state_of("GPU-0"), (None, 0));
    }

    #[test]
    fn a_waiter_whose_client_went_away_leaves_the_queue() {
        let t = LockTable::default();
        let d = vec!["GPU-0".to_string(), "GPU-1".to_string()];
        let _a = t.acquire("a", &d[1..], &mut never()).unwrap();
        let mut calls = 0;
        // b takes GPU-0, then waits for GPU-1 until its client is gone: GPU-0 is released.
        assert!(t
            .acquire("b", &d, &mut || {
                calls += 1;
                calls > 1
            })
            .is_none());
        assert_eq!(t.state_of("GPU-0"), (None, 0));
        assert_eq!(t.state_of("GPU-1"), (Some(("a".into(), 1)), 0));
    }
}
