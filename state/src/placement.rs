//! Which devices an environment gets (ARCHITECTURE.md, "Placement"), and the device list they
//! are picked from. Everything here works on the tables of one transaction.

use crate::devices::Gpu;
use crate::layout::{now_ms, put_str, AttachRec, Tables, MAX_DEVICES};
use crate::Error;

/// What `attach` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AttachOutcome {
    /// Attached (indices in attach order).
    Attached(Vec<u32>),
    /// Not enough devices: the environment is now detached, as usage.rst says; carries the message.
    Failed(String),
}

/// Whether the device list of `t` is what NVML reports now.
pub(crate) fn devices_match(t: &Tables, gpus: &[Gpu]) -> bool {
    t.devices().len() == gpus.len()
        && t.devices_read_ms != 0
        && t.devices().iter().zip(gpus).all(|(d, g)| {
            d.uuid() == g.uuid && d.total_memory == g.total_memory && d.name() == g.name
        })
}

/// Replaces the device list with `gpus`; an attachment stays only where the same GPU (by UUID)
/// still sits at its index.
pub(crate) fn apply_devices(t: &mut Tables, gpus: &[Gpu]) {
    if devices_match(t, gpus) {
        return;
    }
    let old: Vec<String> = t.devices().iter().map(|d| d.uuid()).collect();
    let n = gpus.len().min(MAX_DEVICES);
    for (i, g) in gpus.iter().take(n).enumerate() {
        let d = &mut t.devices[i];
        d.present = 1;
        d.index = i as u32;
        d.total_memory = g.total_memory;
        put_str(&mut d.uuid, &g.uuid);
        put_str(&mut d.name, &g.name);
    }
    for d in &mut t.devices[n..] {
        d.present = 0;
    }
    t.n_devices = n as u32;
    t.devices_read_ms = now_ms();
    let still = |ix: u32| -> bool {
        (ix as usize) < n
            && old
                .get(ix as usize)
                .is_some_and(|u| *u == gpus[ix as usize].uuid)
    };
    for e in t.envs.iter_mut().filter(|e| e.is_used()) {
        e.retain_attached(|a| still(a.device));
    }
}

/// Refuses device index `ix` when this machine has no such device.
pub(crate) fn check_index(t: &Tables, ix: u32) -> Result<(), Error> {
    if ix < t.n_devices {
        return Ok(());
    }
    Err(Error::Input(match t.n_devices {
        0 => format!("invalid device index {ix}: this machine has no GPUs"),
        1 => format!("invalid device index {ix}: this machine has one GPU, index 0"),
        n => format!(
            "invalid device index {ix}: this machine has GPUs 0 to {}",
            n - 1
        ),
    }))
}

/// Whether device `dev` can take environment `slot`: exclusively (nobody else on it), or with
/// `over` shared among over-subscribed environments whose capacities fit in the device memory.
/// Returns the memory that would be left.
fn can_take(t: &Tables, slot: usize, dev: u32, over: bool) -> Option<u64> {
    let d = &t.devices[dev as usize];
    let mut taken = 0u64;
    for (i, e) in t.envs() {
        if i == slot {
            continue;
        }
        for a in e.attached().iter().filter(|a| a.device == dev) {
            if !over || a.shared == 0 {
                return None;
            }
            taken = taken.saturating_add(e.capacity_on(d));
        }
    }
    d.total_memory
        .checked_sub(taken)?
        .checked_sub(t.envs[slot].capacity_on(d))
}

fn push_attach(t: &mut Tables, slot: usize, dev: u32, over: bool) {
    let e = &mut t.envs[slot];
    let n = e.n_attached as usize;
    if n < MAX_DEVICES {
        e.attached[n] = AttachRec {
            device: dev,
            shared: over as u32,
            time_ms: now_ms(),
        };
        e.n_attached += 1;
    }
}

fn attached(t: &Tables, slot: usize) -> Vec<u32> {
    t.envs[slot].attached().iter().map(|a| a.device).collect()
}

/// Attaches environment `slot` to device `ix` too (`attach --index`).
pub(crate) fn attach_index(
    t: &mut Tables,
    slot: usize,
    ix: u32,
    over: bool,
) -> Result<AttachOutcome, Error> {
    check_index(t, ix)?;
    if !attached(t, slot).contains(&ix) {
        if can_take(t, slot, ix, over).is_none() {
            return Err(Error::Unavailable(format!("Device {ix} is not available")));
        }
        push_attach(t, slot, ix, over);
    }
    Ok(AttachOutcome::Attached(attached(t, slot)))
}

/// Attaches environment `slot` to as many devices as its configured count: keeps what it has,
/// takes more or lets the latest go. All or nothing: short of devices, it is left detached.
pub(crate) fn attach_count(t: &mut Tables, slot: usize, over: bool) -> AttachOutcome {
    let want = t.envs[slot].gpus().unwrap_or(0) as usize;
    let have = t.envs[slot].n_attached as usize;
    let n_devices = t.n_devices as usize;
    if want > n_devices {
        t.envs[slot].n_attached = 0;
        return AttachOutcome::Failed(format!(
            "No available devices: {want} requested but this machine has {n_devices}"
        ));
    }
    if have > want {
        // Keep the earliest attachments: the CUDA ordinals of running programs stay valid.
        t.envs[slot].n_attached = want as u32;
    } else if have < want {
        let mine = attached(t, slot);
        let mut cands: Vec<(u64, u32)> = (0..n_devices as u32)
            .filter(|d| !mine.contains(d))
            .filter_map(|d| can_take(t, slot, d, over).map(|left| (left, d)))
            .collect();
        // Exclusive: lowest index first. Shared: tightest fit first, keeping whole GPUs free.
        if over {
            cands.sort();
        } else {
            cands.sort_by_key(|c| c.1);
        }
        if cands.len() < want - have {
            t.envs[slot].n_attached = 0;
            return AttachOutcome::Failed(format!(
                "No available devices: {want} requested, {} available",
                have + cands.len()
            ));
        }
        for (_, d) in cands.into_iter().take(want - have) {
            push_attach(t, slot, d, over);
        }
    }
    AttachOutcome::Attached(attached(t, slot))
}
