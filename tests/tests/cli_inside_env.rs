//! The genv CLI sees the real machine also when it runs inside an environment, where the shell
//! has put the shim in front of it (LD_PRELOAD) and every other program sees only the slice.

use genv_tests::support;

use support::*;

#[test]
fn cli_under_the_shim_sees_the_whole_machine() {
    let sb = Sandbox::new();
    let env = sb.env(&["--gpus", "1", "--gpu-memory", "1gi"]);
    let preload = shim_lib();
    let inside = |args: &[&str]| {
        let mut c = sb.genv_cmd(args);
        c.env("GENV_ENVIRONMENT_ID", &env.eid)
            .env("LD_PRELOAD", &preload);
        Sandbox::output(c)
    };
    // All 4 devices are listed, with their physical memory, though the environment has one GPU
    // capped at 1 GiB.
    let devices = inside(&["devices", "--json"]).json();
    let devices = devices.as_array().expect("devices array");
    assert_eq!(devices.len(), 4);
    for d in devices {
        assert_eq!(d["total_memory"].as_u64(), Some(81559 << 20), "{d}");
    }
    // And it can attach a device the environment does not have yet: the CLI's NVML is real.
    inside(&["attach", "--index", "3"]).ok();
    assert_eq!(
        sb.env_json(&env.eid).expect("env")["attached"],
        serde_json::json!([0, 3])
    );
    // Whereas a program in the environment sees just its slice (nvidia-smi when fetched).
    let smi = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/nvidia-smi/usr/bin/nvidia-smi");
    if smi.exists() {
        let mut c = sb.command(&smi);
        c.args(["--query-gpu=memory.total", "--format=csv,noheader"])
            .env("GENV_ENVIRONMENT_ID", &env.eid)
            .env("LD_PRELOAD", &preload);
        let out = Sandbox::output(c);
        assert_eq!(out.ok(), "1024 MiB\n1024 MiB\n");
    }
}
