//! Every command of usage.rst and its output formats, through the `genv` binary on the
//! simulated machine (4 H100s unless a test says otherwise).

use genv_tests::support;

use serde_json::json;
use support::*;

#[test]
fn status_not_active() {
    let sb = Sandbox::new();
    assert_eq!(sb.genv(&["status"]).ok(), "Environment is not active\n");
    assert_eq!(
        sb.genv(&["status", "--json"]).json(),
        json!({"active": false, "mode": "shared"})
    );
}

#[test]
fn status_active_detached_then_attached() {
    let sb = Sandbox::new();
    let env = sb.env(&[]);
    let s = sb.genv_in(&env.eid, &["status"]);
    assert_eq!(
        s.ok(),
        format!(
            "Environment is active ({})\nDetached from GPUs\n\nConfiguration\n    Name: N/A\n    \
             Device count: N/A\n    GPU memory capacity: N/A\n\n",
            env.eid
        )
    );
    sb.genv_in(&env.eid, &["config", "name", "my-environment"])
        .ok();
    sb.genv_in(&env.eid, &["config", "gpus", "2"]).ok();
    sb.genv_in(&env.eid, &["config", "gpu-memory", "4g"]).ok();
    sb.genv_in(&env.eid, &["attach"]).ok();
    let s = sb.genv_in(&env.eid, &["status"]);
    let lines: Vec<&str> = s.ok().lines().collect();
    assert_eq!(
        lines,
        [
            format!("Environment is active ({})", env.eid).as_str(),
            "Attached to GPUs at indices 0,1",
            "",
            "Configuration",
            "    Name: my-environment",
            "    Device count: 2",
            "    GPU memory capacity: 4g",
            "",
        ]
    );
    let j = sb.genv_in(&env.eid, &["status", "--json"]).json();
    assert_eq!(j["active"], true);
    assert_eq!(j["eid"], env.eid.as_str());
    assert_eq!(j["attached"], json!([0, 1]));
    assert_eq!(
        j["config"],
        json!({"name": "my-environment", "gpus": 2, "gpu_memory": "4g"})
    );
}

#[test]
fn status_of_vanished_environment() {
    let sb = Sandbox::new();
    let mut env = sb.env(&[]);
    env.holder.kill();
    let s = sb.genv_in(&env.eid, &["status"]);
    assert_eq!(s.ok(), "Environment is not active\n");
    assert!(s.stderr.contains("no longer exists"), "{s:?}");
}

#[test]
fn config_fields_set_print_clear() {
    let sb = Sandbox::new();
    let env = sb.env(&[]);
    let e = env.eid.as_str();
    for (field, value) in [
        ("name", "Norwegian Wood"),
        ("gpus", "3"),
        ("gpu-memory", "42mi"),
    ] {
        assert_eq!(sb.genv_in(e, &["config", field]).ok(), "", "{field} unset");
        assert_eq!(sb.genv_in(e, &["config", field, value]).ok(), "");
        assert_eq!(
            sb.genv_in(e, &["config", field]).ok(),
            format!("{value}\n"),
            "{field}"
        );
    }
    assert_eq!(
        sb.genv_in(e, &["config"]).ok(),
        "gpu-memory: 42mi\ngpus: 3\nname: Norwegian Wood\n"
    );
    assert_eq!(
        sb.genv_in(e, &["config", "--json"]).json(),
        json!({"name": "Norwegian Wood", "gpus": 3, "gpu_memory": "42mi"})
    );
    assert_eq!(
        sb.genv_in(e, &["config", "gpus", "--json"]).json(),
        json!(3)
    );
    // The env listing carries the name and config too.
    let j = sb.env_json(e).unwrap();
    assert_eq!(j["name"], "Norwegian Wood");
    assert_eq!(j["config"]["gpu_memory"], "42mi");

    sb.genv_in(e, &["config", "name", "--clear"]).ok();
    assert_eq!(sb.genv_in(e, &["config", "name"]).ok(), "");
    assert_eq!(sb.genv_in(e, &["config", "gpus"]).ok(), "3\n");
    sb.genv_in(e, &["config", "gpu-memory", "--clear"]).ok();
    assert_eq!(sb.genv_in(e, &["config"]).ok(), "gpus: 3\n");
    sb.genv_in(e, &["config", "name", "x"]).ok();
    sb.genv_in(e, &["config", "--clear"]).ok();
    assert_eq!(sb.genv_in(e, &["config", "--json"]).json(), json!({}));
    assert_eq!(sb.genv_in(e, &["config"]).ok(), "");
}

#[test]
fn memory_units() {
    let sb = Sandbox::new();
    let env = sb.env(&[]);
    for v in ["42mi", "4g", "44040192", "10b", "3k", "7m", "1ki", "2gi"] {
        sb.genv_in(&env.eid, &["config", "gpu-memory", v]).ok();
        assert_eq!(
            sb.genv_in(&env.eid, &["config", "gpu-memory"]).ok(),
            format!("{v}\n")
        );
    }
}

#[test]
fn home_save_load_and_auto_load() {
    let sb = Sandbox::new();
    // No .genv anywhere yet.
    sb.genv(&["home"]).fails_with(".genv");
    std::fs::create_dir_all(sb.work.join(".genv")).unwrap();
    let home = sb.work.join(".genv");
    assert_eq!(sb.genv(&["home"]).ok(), format!("{}\n", home.display()));
    // A subdirectory finds the project's .genv.
    let sub = sb.work.join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let mut c = sb.genv_cmd(&["home"]);
    c.current_dir(&sub);
    assert_eq!(Sandbox::output(c).ok(), format!("{}\n", home.display()));

    let env = sb.env(&[]);
    let e = env.eid.as_str();
    sb.genv_in(e, &["config", "name", "proj"]).ok();
    sb.genv_in(e, &["config", "gpus", "2", "--save"]).ok();
    // The original genv's form: one file per field.
    let saved = |f: &str| std::fs::read_to_string(home.join(f)).ok();
    assert_eq!(saved("name").as_deref(), Some("proj\n"));
    assert_eq!(saved("gpus").as_deref(), Some("2\n"));
    assert_eq!(saved("gpu-memory"), None);
    sb.genv_in(e, &["config", "gpu-memory", "8gi"]).ok();
    sb.genv_in(e, &["config", "--save"]).ok();
    assert_eq!(saved("gpu-memory").as_deref(), Some("8gi\n"));
    // --load brings back what was saved.
    sb.genv_in(e, &["config", "--clear"]).ok();
    sb.genv_in(e, &["config", "--load"]).ok();
    assert_eq!(
        sb.genv_in(e, &["config", "--json"]).json(),
        json!({"name": "proj", "gpus": 2, "gpu_memory": "8gi"})
    );
    // The saved config was not attached by --load (attach is explicit).
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([]));
    drop(env);

    // A new activation in the project loads it and attaches.
    let a = sb.env(&[]);
    let j = sb.env_json(&a.eid).unwrap();
    assert_eq!(j["name"], "proj");
    assert_eq!(j["attached"], json!([0, 1]));
    // Flags win over the saved configuration.
    let b = sb.env(&["--name", "other", "--gpus", "1"]);
    let j = sb.env_json(&b.eid).unwrap();
    assert_eq!(j["name"], "other");
    assert_eq!(j["config"]["gpu_memory"], "8gi");
    assert_eq!(j["attached"], json!([2]));
    // --no-attach loads but does not attach.
    let c = sb.env(&["--no-attach"]);
    let j = sb.env_json(&c.eid).unwrap();
    assert_eq!(j["name"], "proj");
    assert_eq!(j["attached"], json!([]));
    // --no-load ignores it.
    let d = sb.env(&["--no-load"]);
    let j = sb.env_json(&d.eid).unwrap();
    assert_eq!(j["config"], json!({}));
    assert_eq!(j["attached"], json!([]));
    // The saved config --clear --save empties the file's config.
    sb.genv_in(&d.eid, &["config", "--clear", "--save"]).ok();
    for f in ["name", "gpus", "gpu-memory", "config.json"] {
        assert_eq!(saved(f), None, "{f}");
    }
}

#[test]
fn home_falls_back_to_home_dir() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.home.join(".genv")).unwrap();
    assert_eq!(
        sb.genv(&["home"]).ok(),
        format!("{}\n", sb.home.join(".genv").display())
    );
}

#[test]
fn attach_by_count_index_and_reattach() {
    let sb = Sandbox::new();
    let env = sb.env(&[]);
    let e = env.eid.as_str();
    sb.genv_in(e, &["config", "gpus", "2"]).ok();
    sb.genv_in(e, &["attach"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0, 1]));
    // Attaching again changes nothing.
    sb.genv_in(e, &["attach"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0, 1]));
    // Attaching an attached device by index has no effect.
    let before = sb.tables_bytes();
    sb.genv_in(e, &["attach", "--index", "1"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0, 1]));
    assert!(
        before == sb.tables_bytes(),
        "attaching an attached device changed the state"
    );
    sb.genv_in(e, &["attach", "--index", "3"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0, 1, 3]));
    // Reconfigure and reattach: grows, then shrinks keeping the earliest attachments.
    sb.genv_in(e, &["config", "gpus", "4"]).ok();
    sb.genv_in(e, &["attach"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0, 1, 3, 2]));
    sb.genv_in(e, &["config", "gpus", "1"]).ok();
    sb.genv_in(e, &["attach"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0]));
    let s = sb.genv_in(e, &["status"]);
    assert!(s.ok().contains("Attached to GPUs at indices 0\n"), "{s:?}");
}

#[test]
fn attach_not_enough_devices_detaches() {
    let sb = Sandbox::new();
    let a = sb.env(&["--gpus", "3"]);
    assert_eq!(sb.env_json(&a.eid).unwrap()["attached"], json!([0, 1, 2]));
    let b = sb.env(&["--gpus", "1"]);
    assert_eq!(sb.env_json(&b.eid).unwrap()["attached"], json!([3]));
    // b wants 2 but only its own 1 is free: it errors and ends up detached, as usage.rst says.
    sb.genv_in(&b.eid, &["config", "gpus", "2"]).ok();
    sb.genv_in(&b.eid, &["attach"])
        .fails_with("No available devices");
    assert_eq!(sb.env_json(&b.eid).unwrap()["attached"], json!([]));
    // More than the machine has.
    sb.genv_in(&b.eid, &["config", "gpus", "5"]).ok();
    sb.genv_in(&b.eid, &["attach", "--index", "3"]).ok();
    sb.genv_in(&b.eid, &["attach"])
        .fails_with("No available devices");
    assert_eq!(sb.env_json(&b.eid).unwrap()["attached"], json!([]));
    // A device of another environment.
    let line = sb
        .genv_in(&b.eid, &["attach", "--index", "2"])
        .fails_with("Device 2 is not available");
    assert_eq!(line, "genv: Device 2 is not available");
    // a is untouched.
    assert_eq!(sb.env_json(&a.eid).unwrap()["attached"], json!([0, 1, 2]));
}

#[test]
fn detach_all_and_by_index() {
    let sb = Sandbox::new();
    let env = sb.env(&["--gpus", "3"]);
    let e = env.eid.as_str();
    sb.genv_in(e, &["detach", "--index", "1"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0, 2]));
    // Detaching a device we are not attached to is harmless.
    sb.genv_in(e, &["detach", "--index", "3"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0, 2]));
    sb.genv_in(e, &["detach"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([]));
    assert!(sb
        .genv_in(e, &["status"])
        .ok()
        .contains("Detached from GPUs"));
    // The devices are free for others.
    let other = sb.env(&["--gpus", "4"]);
    assert_eq!(
        sb.env_json(&other.eid).unwrap()["attached"],
        json!([0, 1, 2, 3])
    );
}

/// Cuts a table row into its padded columns.
fn columns<'a>(row: &'a str, widths: &[usize]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut at = 0;
    for &w in widths {
        out.push(&row[at..at + w]);
        at += w;
    }
    out.push(&row[at..]);
    out
}

#[test]
fn envs_table() {
    let sb = Sandbox::new();
    assert_eq!(
        sb.genv(&["envs"]).ok(),
        "ID      USER            NAME            CREATED              PID(S)\n"
    );
    let a = sb.env(&["--name", "Yesterday"]);
    let b = sb.env(&["--id", "12167", "--name", "Norwegian Wood"]);
    // Age them through the state API: a 27 minutes, b 7 hours.
    let now = genv_state::ops::now_ms();
    sb.store()
        .transaction(|t| {
            for i in 0..t.env_hwm as usize {
                let e = &mut t.envs[i];
                if e.is_used() {
                    e.created_ms = if e.eid() == a.eid {
                        now - 27 * 60_000
                    } else {
                        now - 7 * 3_600_000
                    };
                }
            }
            Ok(())
        })
        .unwrap();
    let user = format!("{}({})", genv_state::procfs::user_name(0), unsafe {
        libc::getuid()
    });
    let out = sb.genv(&["envs"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(
        lines[0],
        "ID      USER            NAME            CREATED              PID(S)"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Oldest first.
    let row_b = columns(lines[1], &[8, 16, 16, 21]);
    let row_a = columns(lines[2], &[8, 16, 16, 21]);
    assert_eq!(row_b[0], "12167   ");
    assert_eq!(row_b[1].trim_end(), user);
    assert_eq!(row_b[2], "Norwegian Wood  ");
    assert_eq!(row_b[3], "7 hours ago          ");
    assert_eq!(row_b[4], b.holder.pid().to_string());
    assert_eq!(row_a[0], format!("{:<8}", a.eid));
    assert_eq!(row_a[1], format!("{user:<16}"));
    assert_eq!(row_a[2], "Yesterday       ");
    assert_eq!(row_a[3], "27 minutes ago       ");
    assert_eq!(row_a[4], a.holder.pid().to_string());

    let j = sb.envs_json();
    let arr = j.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["eid"], "12167");
    assert_eq!(arr[0]["name"], "Norwegian Wood");
    assert_eq!(arr[0]["uid"], unsafe { libc::getuid() });
    assert_eq!(arr[0]["pids"], json!([b.holder.pid()]));
    assert_eq!(arr[1]["eid"], a.eid.as_str());
    assert!(arr[1]["created_ms"].as_u64().unwrap() <= now);
}

#[test]
fn envs_lists_every_joined_pid() {
    let sb = Sandbox::new();
    let a = sb.env(&["--id", "shared"]);
    let second = Holder::spawn();
    sb.activate_for(second.pid(), &["--id", "shared"]).ok();
    let j = sb.env_json("shared").unwrap();
    assert_eq!(j["pids"], json!([a.holder.pid(), second.pid()]));
    let out = sb.genv(&["envs"]);
    let row = out.ok().lines().nth(1).unwrap().to_string();
    assert!(
        row.ends_with(&format!("{} {}", a.holder.pid(), second.pid())),
        "{row:?}"
    );
    // Deactivating one member keeps the environment for the other.
    sb.genv_in(
        "shared",
        &[
            "deactivate",
            "--shell",
            "bash",
            "--shell-pid",
            &a.holder.pid().to_string(),
        ],
    )
    .ok();
    assert_eq!(
        sb.env_json("shared").unwrap()["pids"],
        json!([second.pid()])
    );
}

#[test]
fn devices_table() {
    let sb = Sandbox::new();
    let out = sb.genv(&["devices"]);
    assert_eq!(
        out.ok(),
        "ID      ENV ID      ENV NAME        ATTACHED\n0\n1\n2\n3\n"
    );
    let a = sb.env(&["--name", "Yesterday", "--gpus", "1"]);
    let b = sb.env(&["--id", "12167", "--name", "Norwegian Wood", "--gpus", "1"]);
    // Age the attachments through the state API to see relative times.
    let now = genv_state::ops::now_ms();
    sb.store()
        .transaction(|t| {
            for i in 0..t.env_hwm as usize {
                let e = &mut t.envs[i];
                if e.is_used() && e.eid() == "12167" {
                    e.attached[0].time_ms = now - 7 * 3_600_000;
                }
                if e.is_used() && e.eid() == a.eid {
                    e.attached[0].time_ms = now - 25 * 60_000;
                }
            }
            Ok(())
        })
        .unwrap();
    let out = sb.genv(&["devices"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines[0], "ID      ENV ID      ENV NAME        ATTACHED");
    assert_eq!(
        lines[1],
        format!("0       {:<12}Yesterday       25 minutes ago", a.eid)
    );
    assert_eq!(lines[2], "1       12167       Norwegian Wood  7 hours ago");
    assert_eq!(&lines[3..], ["2", "3"]);
    drop(b);

    let j = sb.devices_json();
    let arr = j.as_array().unwrap();
    assert_eq!(arr.len(), 4);
    assert_eq!(arr[0]["index"], 0);
    assert_eq!(arr[0]["name"], "NVIDIA H100 80GB HBM3");
    assert!(arr[0]["uuid"].as_str().unwrap().starts_with("GPU-"));
    assert_eq!(arr[0]["total_memory"], 81559u64 << 20);
    assert_eq!(arr[0]["attachments"][0]["eid"], a.eid.as_str());
    assert_eq!(arr[0]["attachments"][0]["env_name"], "Yesterday");
    // b's holder is gone: its device is free again.
    assert_eq!(arr[1]["attachments"], json!([]));
}

#[test]
fn devices_one_row_per_attachment() {
    let mut sb = Sandbox::with_gpus(2);
    sb.set("GENV_SIM_GPU_MEMORY", "80gi");
    let a = sb.env(&["--name", "a", "--gpu-memory", "40gi"]);
    let b = sb.env(&["--name", "b", "--gpu-memory", "40gi"]);
    sb.genv_in(&a.eid, &["attach", "--index", "1", "--over-subscribe"])
        .ok();
    sb.genv_in(&b.eid, &["attach", "--index", "1", "--over-subscribe"])
        .ok();
    let out = sb.genv(&["devices"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[1], "0");
    assert!(lines[2].starts_with(&format!("1       {:<12}a  ", a.eid)));
    assert!(lines[3].starts_with(&format!("1       {:<12}b  ", b.eid)));
    assert_eq!(
        sb.attachments(),
        vec![(0, vec![]), (1, vec![a.eid.clone(), b.eid.clone()])]
    );
    let j = sb.devices_json();
    assert_eq!(j[1]["attachments"][0]["over_subscribed"], true);
}

#[test]
fn over_subscribe_memory_aware() {
    let mut sb = Sandbox::with_gpus(1);
    sb.set("GENV_SIM_GPU_MEMORY", "80gi");
    let a = sb.env(&["--gpus", "1", "--gpu-memory", "40gi", "--over-subscribe"]);
    let b = sb.env(&["--gpus", "1", "--gpu-memory", "40gi", "--over-subscribe"]);
    assert_eq!(
        sb.attachments(),
        vec![(0, vec![a.eid.clone(), b.eid.clone()])]
    );
    // A third 40gi does not fit.
    let c = sb.env(&["--gpu-memory", "40gi", "--gpus", "1", "--no-attach"]);
    sb.genv_in(&c.eid, &["attach", "--over-subscribe"])
        .fails_with("No available devices");
    sb.genv_in(&c.eid, &["attach", "--index", "0", "--over-subscribe"])
        .fails_with("Device 0 is not available");
    // A small one still fits? No: 80gi is fully taken.
    sb.genv_in(&c.eid, &["config", "gpu-memory", "1mi"]).ok();
    sb.genv_in(&c.eid, &["attach", "--over-subscribe"])
        .fails_with("No available devices");
    // Without --over-subscribe nobody joins a shared device.
    drop(b);
    sb.genv_in(&c.eid, &["config", "gpu-memory", "40gi"]).ok();
    sb.genv_in(&c.eid, &["attach"])
        .fails_with("No available devices");
    sb.genv_in(&c.eid, &["attach", "--over-subscribe"]).ok();
    assert_eq!(
        sb.attachments(),
        vec![(0, vec![a.eid.clone(), c.eid.clone()])]
    );
    // An environment without a capacity needs the whole device.
    let d = sb.env(&["--gpus", "1", "--no-attach"]);
    sb.genv_in(&d.eid, &["attach", "--over-subscribe"])
        .fails_with("No available devices");
    drop(a);
    drop(c);
    sb.genv_in(&d.eid, &["attach", "--over-subscribe"]).ok();
    // …and then leaves no room for a capped one.
    let e = sb.env(&["--gpus", "1", "--gpu-memory", "1gi", "--no-attach"]);
    sb.genv_in(&e.eid, &["attach", "--over-subscribe"])
        .fails_with("No available devices");
    assert_eq!(sb.attachments(), vec![(0, vec![d.eid.clone()])]);
}

#[test]
fn over_subscribe_exclusive_holder_blocks() {
    let mut sb = Sandbox::with_gpus(1);
    sb.set("GENV_SIM_GPU_MEMORY", "80gi");
    let a = sb.env(&["--gpus", "1", "--gpu-memory", "10gi"]);
    assert_eq!(sb.attachments(), vec![(0, vec![a.eid.clone()])]);
    let b = sb.env(&["--gpus", "1", "--gpu-memory", "10gi", "--no-attach"]);
    // a took the device exclusively: even an over-subscriber cannot join.
    sb.genv_in(&b.eid, &["attach", "--over-subscribe"])
        .fails_with("No available devices");
}

#[test]
fn over_subscribe_prefers_tightest_fit() {
    let mut sb = Sandbox::with_gpus(2);
    sb.set("GENV_SIM_GPU_MEMORY", "80gi");
    let a = sb.env(&["--gpus", "1", "--gpu-memory", "40gi", "--over-subscribe"]);
    let b = sb.env(&["--gpus", "1", "--gpu-memory", "30gi", "--over-subscribe"]);
    // b shares a's device, keeping device 1 whole for someone who needs it.
    assert_eq!(
        sb.attachments(),
        vec![(0, vec![a.eid.clone(), b.eid.clone()]), (1, vec![])]
    );
    let c = sb.env(&["--gpus", "1"]);
    assert_eq!(sb.env_json(&c.eid).unwrap()["attached"], json!([1]));
}

#[test]
fn devices_follow_the_machine() {
    let mut sb = Sandbox::with_gpus(4);
    let a = sb.env(&[]);
    let b = sb.env(&["--gpus", "1"]);
    sb.genv_in(&a.eid, &["attach", "--index", "2"]).ok();
    sb.genv_in(&a.eid, &["attach", "--index", "3"]).ok();
    assert_eq!(sb.attachments().len(), 4);
    // Two GPUs vanish.
    sb.set("GENV_SIM_GPUS", "2");
    assert_eq!(
        sb.attachments(),
        vec![(0, vec![b.eid.clone()]), (1, vec![])]
    );
    assert_eq!(sb.env_json(&a.eid).unwrap()["attached"], json!([]));
    assert!(sb
        .genv_in(&a.eid, &["status"])
        .ok()
        .contains("Detached from GPUs"));
    sb.genv_in(&a.eid, &["attach", "--index", "2"])
        .fails_with("invalid device index 2");
    // GPUs added later appear (the original genv cached the list for good).
    sb.set("GENV_SIM_GPUS", "6");
    let devs = sb.attachments();
    assert_eq!(devs.len(), 6);
    assert_eq!(devs[0].1, vec![b.eid.clone()]);
    sb.genv_in(&a.eid, &["attach", "--index", "5"]).ok();
    assert_eq!(sb.env_json(&a.eid).unwrap()["attached"], json!([5]));
    // attach re-reads the machine by itself, without `genv devices` first.
    sb.set("GENV_SIM_GPUS", "3");
    sb.genv_in(&a.eid, &["config", "gpus", "3"]).ok();
    sb.genv_in(&a.eid, &["attach"])
        .fails_with("No available devices");
    sb.genv_in(&a.eid, &["config", "gpus", "2"]).ok();
    sb.genv_in(&a.eid, &["attach"]).ok();
    assert_eq!(sb.env_json(&a.eid).unwrap()["attached"], json!([1, 2]));
}

#[test]
fn swapped_gpu_drops_its_attachments() {
    let sb = Sandbox::new();
    let a = sb.env(&["--gpus", "2"]);
    assert_eq!(sb.env_json(&a.eid).unwrap()["attached"], json!([0, 1]));
    // As if GPU 1 had been replaced since the list was read: the recorded UUID differs.
    sb.store()
        .transaction(|t| {
            genv_state::layout::put_str(&mut t.devices[1].uuid, "GPU-replaced");
            Ok(())
        })
        .unwrap();
    let devs = sb.devices_json();
    assert_ne!(devs[1]["uuid"], "GPU-replaced");
    assert_eq!(sb.env_json(&a.eid).unwrap()["attached"], json!([0]));
}

#[test]
fn exec_runs_and_cleans_up() {
    let sb = Sandbox::new();
    let out = sb.genv(&[
        "exec",
        "--name",
        "job",
        "--gpus",
        "2",
        "--",
        "sh",
        "-c",
        "echo \"eid=$GENV_ENVIRONMENT_ID\"; echo \"preload=$LD_PRELOAD\"; genv status --json; exit 3",
    ]);
    assert_eq!(out.code, Some(3), "{out:?}");
    let eid = kv(&out.stdout, "eid").unwrap();
    assert!(eid.starts_with("exec-"), "{eid}");
    let preload = kv(&out.stdout, "preload").unwrap();
    assert_eq!(
        preload.split(':').next().unwrap(),
        shim_lib().canonicalize().unwrap().to_str().unwrap()
    );
    let status: serde_json::Value =
        serde_json::from_str(out.stdout.lines().nth(2).unwrap()).unwrap();
    assert_eq!(status["eid"], eid.as_str());
    assert_eq!(status["attached"], json!([0, 1]));
    assert_eq!(status["config"]["name"], "job");
    // Gone afterwards, and the devices are free.
    assert_eq!(sb.eids(), Vec::<String>::new());
    assert!(sb.attachments().iter().all(|(_, e)| e.is_empty()));
}

#[test]
fn exec_keeps_existing_preload_after_shim() {
    let sb = Sandbox::new();
    let libc = libc_path();
    let mut c = sb.genv_cmd(&["exec", "--", "sh", "-c", "echo \"$LD_PRELOAD\""]);
    c.env("LD_PRELOAD", &libc);
    let out = Sandbox::output(c);
    let shim = shim_lib().canonicalize().unwrap();
    assert_eq!(out.ok().trim_end(), format!("{}:{libc}", shim.display()));
}

#[test]
fn exec_exit_status_and_signals() {
    let sb = Sandbox::new();
    assert_eq!(sb.genv(&["exec", "--", "true"]).code, Some(0));
    assert_eq!(sb.genv(&["exec", "--", "false"]).code, Some(1));
    assert_eq!(
        sb.genv(&["exec", "--gpus", "1", "--", "sh", "-c", "exit 42"])
            .code,
        Some(42)
    );
    let out = sb.genv(&["exec", "--gpus", "1", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.code, Some(128 + 15), "{out:?}");
    let out = sb.genv(&["exec", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code, Some(128 + 9), "{out:?}");
    // A command that cannot start.
    let out = sb.genv(&["exec", "--gpus", "1", "--", "/nonexistent/program"]);
    out.fails_with("/nonexistent/program");
    assert_eq!(sb.eids(), Vec::<String>::new());
    assert!(sb.attachments().iter().all(|(_, e)| e.is_empty()));
}

#[test]
fn exec_with_index_and_not_enough_devices() {
    let sb = Sandbox::new();
    let out = sb.genv(&[
        "exec", "--index", "3", "--index", "1", "--", "genv", "status", "--json",
    ]);
    assert_eq!(out.json()["attached"], json!([3, 1]));
    let other = sb.env(&["--gpus", "3"]);
    // The command does not run when its devices cannot be had, and nothing is left behind.
    let out = sb.genv(&["exec", "--gpus", "2", "--", "sh", "-c", "echo ran"]);
    out.fails_with("No available devices");
    assert_eq!(out.stdout, "");
    let out = sb.genv(&["exec", "--index", "0", "--", "sh", "-c", "echo ran"]);
    out.fails_with("Device 0 is not available");
    assert_eq!(out.stdout, "");
    assert_eq!(sb.eids(), vec![other.eid.clone()]);
}

#[test]
fn exec_inside_an_activated_shell_gets_its_own_env() {
    let sb = Sandbox::new();
    let env = sb.env(&["--gpus", "1"]);
    let mut c = sb.genv_cmd(&["exec", "--gpus", "1", "--", "genv", "status", "--json"]);
    c.env("GENV_ENVIRONMENT_ID", &env.eid);
    let j = Sandbox::output(c).json();
    assert_ne!(j["eid"], env.eid.as_str());
    assert_eq!(j["attached"], json!([1]));
    assert_eq!(sb.eids(), vec![env.eid.clone()]);
}

#[test]
fn help_and_version() {
    let sb = Sandbox::new();
    for cmd in [
        "activate",
        "deactivate",
        "status",
        "config",
        "attach",
        "detach",
        "envs",
        "devices",
        "exec",
        "home",
        "shell-init",
    ] {
        let out = sb.genv(&[cmd, "--help"]);
        assert!(out.ok().contains("Usage:"), "{cmd}: {out:?}");
    }
    assert!(sb.genv(&["--version"]).ok().starts_with("genv "));
    // `genv config --help` lists the fields.
    let out = sb.genv(&["config", "--help"]);
    for f in ["gpus", "gpu-memory", "name"] {
        assert!(out.stdout.contains(f), "{f}");
    }
}
