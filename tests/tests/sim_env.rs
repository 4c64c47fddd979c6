//! `scripts/sim-env` gives each user a simulated machine and genv state of their own, private,
//! and never the machine's real genv state or configuration.

use genv_tests::support;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use support::*;

fn exports(sb: &Sandbox, u: &User) -> Vec<(String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/sim-env");
    let mut c = as_user(sb, u, "bash");
    c.arg(script)
        .env_remove("GENV_SIM_DIR")
        .env_remove("GENV_TMPDIR");
    let out = Sandbox::output(c);
    out.ok()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

#[test]
fn each_user_simulates_alone() {
    if !can_switch_users() {
        return;
    }
    let sb = Sandbox::new();
    let a = user("genv-sim-a", 61011);
    let b = user("genv-sim-b", 61012);
    let (ea, eb) = (exports(&sb, &a), exports(&sb, &b));
    let get = |e: &[(String, String)], k: &str| {
        e.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in {e:?}"))
    };
    for (e, u) in [(&ea, &a), (&eb, &b)] {
        assert_eq!(get(e, "GENV_CONFIG"), "");
        let tmp = get(e, "GENV_TMPDIR");
        assert!(!tmp.starts_with("/var/tmp/genv"), "{tmp}");
        let own = Path::new(&tmp).parent().unwrap().to_path_buf();
        let md = std::fs::metadata(&own).unwrap();
        assert_eq!(
            (md.uid(), md.mode() & 0o777),
            (u.uid, 0o700),
            "{}",
            own.display()
        );
        assert!(get(e, "GENV_SIM_DIR").starts_with(own.to_str().unwrap()));
    }
    assert_ne!(get(&ea, "GENV_TMPDIR"), get(&eb, "GENV_TMPDIR"));
    assert_ne!(get(&ea, "GENV_SIM_DIR"), get(&eb, "GENV_SIM_DIR"));
}
