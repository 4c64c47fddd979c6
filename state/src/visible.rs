//! How a `CUDA_VISIBLE_DEVICES` the user set is read inside an environment (docs/shim.md, "CUDA
//! devices"): it selects among the environment's GPUs — indices into attach order, or unique
//! prefixes of UUIDs — and, like the driver's own reading, the list stops at the first entry
//! that names no device or one already named. The CLI uses it to tell the user at `activate` /
//! `exec` what an inherited value will do; the shim applies this very rule
//! (shim/src/cuda/devices.rs).

/// The positions (into `uuids`, the environment's GPUs in attach order) that the user's value
/// selects; `None` (unset) selects all.
pub fn select(user: Option<&str>, uuids: &[&str]) -> Vec<usize> {
    let Some(spec) = user else {
        return (0..uuids.len()).collect();
    };
    let mut out = Vec::new();
    for entry in spec.split(',').map(str::trim) {
        let hit = if !entry.is_empty() && entry.bytes().all(|b| b.is_ascii_digit()) {
            entry.parse::<usize>().ok().filter(|&i| i < uuids.len())
        } else if entry.len() > 4 && entry[..4].eq_ignore_ascii_case("GPU-") {
            let want = entry.to_ascii_lowercase();
            let mut hits =
                (0..uuids.len()).filter(|&i| uuids[i].to_ascii_lowercase().starts_with(&want));
            match (hits.next(), hits.next()) {
                (Some(i), None) => Some(i),
                _ => None,
            }
        } else {
            None
        };
        match hit {
            Some(i) if !out.contains(&i) => out.push(i),
            _ => break,
        }
    }
    out
}

/// The user's own value from the process environment: `CUDA_VISIBLE_DEVICES`, unless it is the
/// value the shim set for a parent's environment (`GENV_CUDA_VISIBLE_DEVICES_SET`), in which case
/// the user's is the one the shim saved (`GENV_CUDA_VISIBLE_DEVICES_USER`).
pub fn user_value<'a>(
    current: Option<&'a str>,
    shim_set: Option<&str>,
    saved_user: Option<&'a str>,
) -> Option<&'a str> {
    if current.is_some() && current == shim_set {
        saved_user
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        let u = ["GPU-aaaa", "GPU-bbbb", "GPU-bbbc"];
        assert_eq!(select(None, &u), vec![0, 1, 2]);
        assert_eq!(select(Some(""), &u), Vec::<usize>::new());
        assert_eq!(select(Some("2,0"), &u), vec![2, 0]);
        assert_eq!(select(Some("1,7,0"), &u), vec![1]);
        assert_eq!(select(Some("GPU-a,0"), &u), vec![0]);
        assert_eq!(select(Some("GPU-bbb"), &u), Vec::<usize>::new());
        assert_eq!(select(Some("gpu-bbbc, 0"), &u), vec![2, 0]);
        assert_eq!(select(Some("1,1"), &u), vec![1]);
        assert_eq!(select(Some("GPU-"), &u), Vec::<usize>::new());
        assert_eq!(select(Some("1,1"), &u), vec![1]);
    }

    #[test]
    fn inherited_value() {
        assert_eq!(user_value(Some("0"), None, None), Some("0"));
        assert_eq!(
            user_value(Some("GPU-x"), Some("GPU-x"), Some("1")),
            Some("1")
        );
        assert_eq!(user_value(Some("GPU-x"), Some("GPU-x"), None), None);
        assert_eq!(user_value(None, Some("GPU-x"), Some("1")), None);
    }
}
