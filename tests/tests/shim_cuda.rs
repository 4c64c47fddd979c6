//! The shim's CUDA side over the simulated machine: the device view, the memory capacity on
//! every allocation path, through each of the three ways programs reach the driver.

use genv_tests::shim;
use genv_tests::support;

use shim::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use support::*;

const WAYS: [&str; 3] = ["link", "dlsym", "gpa"];

/// An environment held by a `sleep`, attached to NVML devices `indices` in that order.
fn env_with(sb: &Sandbox, eid: &str, mem: Option<&str>, indices: &[u32], over: bool) -> Env {
    let mut args = vec!["--id", eid];
    if let Some(m) = mem {
        args.extend(["--gpu-memory", m]);
    }
    let e = sb.env(&args);
    for i in indices {
        let i = i.to_string();
        let mut a = vec!["attach", "--index", &i];
        if over {
            a.push("--over-subscribe");
        }
        sb.genv_in(eid, &a).ok();
    }
    e
}

fn run(sb: &Sandbox, eid: Option<&str>, args: &[&str], vars: &[(&str, &str)]) -> Out {
    let mut c = match eid {
        Some(e) => under_shim(sb, e, shim_cuda()),
        None => sb.command(shim_cuda()),
    };
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    let o = Sandbox::output(c);
    o.no_panic();
    o
}

#[test]
fn view_is_the_attached_gpus_in_attach_order_by_uuid() {
    let mut sb = Sandbox::new();
    // CUDA numbers devices differently from NVML; the view must follow UUIDs.
    sb.set("GENV_SIM_CUDA_ORDER", "reverse");
    let uuids = host_uuids(&sb);
    let _e = env_with(&sb, "v1", Some("4gi"), &[2, 0], false);
    for way in WAYS {
        let o = run(&sb, Some("v1"), &[way, "view"], &[]);
        let out = o.ok();
        assert_eq!(field(out, "count"), Some(vec!["2"]), "{way}: {out}");
        let devs = fields(out, "dev");
        assert_eq!(
            devs[0][1], uuids[2],
            "{way}: ordinal 0 is the first attached"
        );
        assert_eq!(
            devs[1][1], uuids[0],
            "{way}: ordinal 1 is the second attached"
        );
        for d in &devs {
            assert_eq!(
                d[3],
                (4 * GI).to_string(),
                "{way}: cuDeviceTotalMem is the capacity"
            );
        }
        for m in ["mem0", "mem1"] {
            assert_eq!(
                field(out, m),
                Some(vec!["0", &(4 * GI).to_string(), &(4 * GI).to_string()]),
                "{way}: {out}"
            );
        }
    }
}

#[test]
fn other_gpus_cannot_be_reached() {
    let sb = Sandbox::new();
    let uuids = host_uuids(&sb);
    let _e = env_with(&sb, "r1", None, &[1], false);
    // By PCI bus id: host 0 is 0000:18:00.0, host 1 is 0000:28:00.0.
    let o = run(&sb, Some("r1"), &["link", "bus", "0000:18:00.0"], &[]);
    let bus = field(o.ok(), "bus").unwrap();
    assert_ne!(bus[0], "0", "a non-attached GPU is found by bus id: {o:?}");
    let o = run(&sb, Some("r1"), &["link", "bus", "0000:28:00.0"], &[]);
    assert_eq!(field(o.ok(), "bus"), Some(vec!["0", "0"]));
    // By UUID, and by ordinal (only one device).
    let o = run(&sb, Some("r1"), &["gpa", "uuid", &uuids[0]], &[]);
    assert_eq!(field(o.ok(), "uuid"), Some(vec!["-1"]));
    assert_eq!(field(o.ok(), "count"), Some(vec!["1"]));
    let o = run(&sb, Some("r1"), &["gpa", "uuid", &uuids[1]], &[]);
    assert_eq!(field(o.ok(), "uuid"), Some(vec!["0"]));
    // An environment's own CUDA_VISIBLE_DEVICES cannot widen it.
    let o = run(
        &sb,
        Some("r1"),
        &["link", "view"],
        &[("CUDA_VISIBLE_DEVICES", "0,1,2,3")],
    );
    assert_eq!(field(o.ok(), "count"), Some(vec!["1"]));
    let o = run(
        &sb,
        Some("r1"),
        &["link", "view"],
        &[("CUDA_VISIBLE_DEVICES", &uuids[0])],
    );
    // Selecting a GPU outside the environment selects nothing, as in a container.
    assert_eq!(field(&o.stdout, "init"), Some(vec!["100"]), "{o:?}");
}

#[test]
fn cuda_visible_devices_selects_among_the_environment_gpus() {
    let mut sb = Sandbox::new();
    sb.set("GENV_SIM_CUDA_ORDER", "reverse");
    let uuids = host_uuids(&sb);
    let _e = env_with(&sb, "c1", None, &[3, 1, 2], false);
    for (cvd, want) in [
        ("1", vec![1usize]),
        ("2,0", vec![2, 3]),
        (uuids[2].as_str(), vec![2]),
        ("1,9,0", vec![1]),
    ] {
        let o = run(
            &sb,
            Some("c1"),
            &["link", "view"],
            &[("CUDA_VISIBLE_DEVICES", cvd)],
        );
        let devs: Vec<String> = fields(o.ok(), "dev")
            .iter()
            .map(|d| d[1].to_string())
            .collect();
        let want: Vec<String> = want.iter().map(|&h| uuids[h].clone()).collect();
        assert_eq!(devs, want, "CUDA_VISIBLE_DEVICES={cvd}");
    }
    let o = run(
        &sb,
        Some("c1"),
        &["link", "view"],
        &[("CUDA_VISIBLE_DEVICES", "")],
    );
    assert_eq!(field(&o.stdout, "init"), Some(vec!["100"]));
}

#[test]
fn every_allocation_path_is_held_to_the_capacity() {
    let sb = Sandbox::new();
    let _e = env_with(&sb, "a1", Some("1gi"), &[0], false);
    let cap = GI.to_string();
    for way in ["link", "gpa"] {
        for kind in [
            "mem", "pitch", "managed", "async", "pool", "vmm", "array", "array3d", "mipmap",
        ] {
            let o = run(
                &sb,
                Some("a1"),
                &[way, "fill", kind, &(128 * MI).to_string()],
                &[],
            );
            let out = o.ok();
            // 8 chunks fit exactly; the 9th is refused with CUDA_ERROR_OUT_OF_MEMORY.
            assert_eq!(
                field(out, "filled"),
                Some(vec!["8", "err", "2"]),
                "{way} {kind}: {out}"
            );
            let mems = fields(out, "mem");
            assert_eq!(mems[0], vec!["0", "0", cap.as_str()], "{way} {kind}: full");
            assert_eq!(
                mems[1],
                vec!["0", cap.as_str(), cap.as_str()],
                "{way} {kind}: all given back"
            );
        }
    }
}

#[test]
fn oversized_single_allocation_is_refused_and_nothing_leaks() {
    let sb = Sandbox::new();
    let _e = env_with(&sb, "o1", Some("512mi"), &[0], false);
    let o = run(
        &sb,
        Some("o1"),
        &["dlsym", "alloc", "mem", &GI.to_string(), "1"],
        &[],
    );
    assert_eq!(field(o.ok(), "ok"), Some(vec!["0", "err", "2"]));
    let o = run(
        &sb,
        Some("o1"),
        &["dlsym", "alloc", "mem", &(512 * MI).to_string(), "1"],
        &[],
    );
    assert_eq!(field(o.ok(), "ok"), Some(vec!["1", "err", "0"]));
}

#[test]
fn outside_an_environment_nothing_changes() {
    let sb = Sandbox::new();
    let _e = env_with(&sb, "n1", Some("1gi"), &[0], false);
    let physical = (81559 * MI).to_string();
    // No GENV_ENVIRONMENT_ID, with the shim preloaded.
    let mut c = sb.command(shim_cuda());
    c.env("LD_PRELOAD", shim_lib()).args(["gpa", "view"]);
    let o = Sandbox::output(c);
    assert_eq!(field(o.ok(), "count"), Some(vec!["4"]));
    assert_eq!(fields(o.ok(), "dev")[0][3], physical);
    // Bypassed, as the genv CLI runs.
    let o = run(
        &sb,
        Some("n1"),
        &["link", "view"],
        &[("GENV_SHIM_BYPASS", "1")],
    );
    assert_eq!(field(o.ok(), "count"), Some(vec!["4"]));
    let o = run(
        &sb,
        Some("n1"),
        &["link", "alloc", "mem", &(2 * GI).to_string(), "1"],
        &[("GENV_SHIM_BYPASS", "1")],
    );
    assert_eq!(field(o.ok(), "ok"), Some(vec!["1", "err", "0"]));
}

#[test]
fn unreadable_state_exposes_no_gpu_with_one_line() {
    let sb = Sandbox::new();
    let _e = env_with(&sb, "s1", None, &[0], false);
    // An environment that does not exist.
    let o = run(&sb, Some("nope"), &["link", "view"], &[]);
    assert_eq!(field(o.ok(), "init"), Some(vec!["100"]));
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{o:?}");
    assert!(lines[0].contains("no GPU"), "{o:?}");
    // A state directory that does not exist.
    let o = run(
        &sb,
        Some("s1"),
        &["gpa", "view"],
        &[("GENV_TMPDIR", "/nonexistent/genv")],
    );
    assert_eq!(field(o.ok(), "init"), Some(vec!["100"]));
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    // A state file that is garbage.
    let bad = sb.root.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("state.v2"), b"not a state file").unwrap();
    let o = run(
        &sb,
        Some("s1"),
        &["dlsym", "view"],
        &[("GENV_TMPDIR", bad.to_str().unwrap())],
    );
    assert_eq!(field(o.ok(), "init"), Some(vec!["100"]));
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
}

#[test]
fn capacity_changes_apply_to_running_processes() {
    let sb = Sandbox::new();
    let _e = env_with(&sb, "g1", Some("1gi"), &[0], false);
    // Hold 768 MiB, lower the capacity to 512 MiB: memory info says 0 free (no error),
    // then raise it to 2 GiB: the same process may take more.
    let mut c = under_shim(&sb, "g1", shim_cuda());
    c.args(["link", "alloc", "mem", &(768 * MI).to_string(), "1", "hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for l in lines.by_ref() {
        if l.unwrap() == "held" {
            break;
        }
    }
    sb.genv_in("g1", &["config", "gpu-memory", "512mi"]).ok();
    let o = run(
        &sb,
        Some("g1"),
        &["link", "alloc", "mem", &MI.to_string(), "1"],
        &[],
    );
    assert_eq!(field(o.ok(), "ok"), Some(vec!["0", "err", "2"]), "{o:?}");
    let mem = fields(o.ok(), "mem");
    assert_eq!(mem[0], vec!["0", "0", &(512 * MI).to_string()]);
    sb.genv_in("g1", &["config", "gpu-memory", "2gi"]).ok();
    let o = run(
        &sb,
        Some("g1"),
        &["link", "alloc", "mem", &GI.to_string(), "1"],
        &[],
    );
    assert_eq!(field(o.ok(), "ok"), Some(vec!["1", "err", "0"]), "{o:?}");
    drop(child.stdin.take());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
}

#[test]
fn two_environments_sharing_a_gpu_each_keep_their_cap() {
    let sb = Sandbox::new();
    let _a = env_with(&sb, "sa", Some("2gi"), &[0], true);
    let _b = env_with(&sb, "sb", Some("3gi"), &[0], true);
    let chunk = (256 * MI).to_string();
    let mut ca = under_shim(&sb, "sa", shim_cuda());
    ca.args(["link", "alloc", "mem", &chunk, "100", "hold"]);
    let a = spawn_held(ca);
    let first = &a.before;
    assert!(first.iter().any(|l| l == "ok 8 err 2"), "{first:?}");
    let o = run(
        &sb,
        Some("sb"),
        &["gpa", "alloc", "mem", &chunk, "100"],
        &[],
    );
    assert_eq!(field(o.ok(), "ok"), Some(vec!["12", "err", "2"]));
    let mem = fields(o.ok(), "mem");
    assert_eq!(mem[0], vec!["0", "0", &(3 * GI).to_string()]);
    assert!(a.finish().0);
}

#[test]
fn a_killed_process_gives_its_memory_back() {
    let sb = Sandbox::new();
    let _e = env_with(&sb, "k1", Some("4gi"), &[0], false);
    let mut c = under_shim(&sb, "k1", shim_cuda());
    c.args(["link", "alloc", "vmm", &GI.to_string(), "3", "hold"]);
    let mut held = spawn_held(c);
    let got = &held.before;
    assert!(got.iter().any(|l| l == "ok 3 err 0"), "{got:?}");
    let o = run(
        &sb,
        Some("k1"),
        &["link", "alloc", "mem", &(2 * GI).to_string(), "1"],
        &[],
    );
    assert_eq!(field(o.ok(), "ok"), Some(vec!["0", "err", "2"]));
    held.child.kill().unwrap();
    held.child.wait().unwrap();
    let o = run(
        &sb,
        Some("k1"),
        &["link", "alloc", "mem", &(4 * GI).to_string(), "1"],
        &[],
    );
    assert_eq!(field(o.ok(), "ok"), Some(vec!["1", "err", "0"]), "{o:?}");
}

#[test]
fn debug_log_says_what_was_decided() {
    let sb = Sandbox::new();
    let _e = env_with(&sb, "l1", Some("1gi"), &[1], false);
    let log = sb.root.join("shim.log");
    let o = run(
        &sb,
        Some("l1"),
        &["gpa", "alloc", "mem", &(2 * GI).to_string(), "1"],
        &[
            ("GENV_LOG", "debug"),
            ("GENV_LOG_FILE", log.to_str().unwrap()),
        ],
    );
    assert!(o.stderr.is_empty(), "{o:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("in environment l1"), "{text}");
    assert!(
        text.contains("CUDA_VISIBLE_DEVICES for the driver"),
        "{text}"
    );
    assert!(text.contains("out of memory"), "{text}");
    // Off by default: nothing on stderr.
    let o = run(&sb, Some("l1"), &["gpa", "view"], &[]);
    assert!(o.stderr.is_empty(), "{o:?}");
}

#[test]
fn children_of_a_cuda_process_reinterpret_the_users_selection() {
    let sb = Sandbox::new();
    let uuids = host_uuids(&sb);
    let _e = env_with(&sb, "h1", None, &[2, 1, 0], false);
    // The parent initialises CUDA (which rewrites CUDA_VISIBLE_DEVICES for the driver), then the
    // environment gains a GPU, then the parent starts a child: the child applies the user's
    // selection ("1,3": the environment's second and fourth GPUs) to the environment as it is.
    // libc's getenv and system(): Python's os.environ is a copy taken at start-up.
    let script = format!(
        "import ctypes, sys\n\
         assert ctypes.CDLL('libcuda.so.1').cuInit(0) == 0\n\
         libc = ctypes.CDLL(None)\n\
         libc.getenv.restype = ctypes.c_char_p\n\
         print('parent', libc.getenv(b'CUDA_VISIBLE_DEVICES').decode(), flush=True)\n\
         sys.stdin.readline()\n\
         sys.exit(libc.system(b'{} link view') >> 8)\n",
        shim_cuda().display()
    );
    let mut c = under_shim(&sb, "h1", "/usr/bin/python3");
    c.args(["-c", &script])
        .env("CUDA_VISIBLE_DEVICES", "1,3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut p = c.spawn().unwrap();
    let mut lines = BufReader::new(p.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // Only "1" applies in the parent: the environment has 3 GPUs, so "3" ends the list.
    assert_eq!(first, format!("parent {}", uuids[1]));
    sb.genv_in("h1", &["attach", "--index", "3"]).ok();
    writeln!(p.stdin.as_mut().unwrap()).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(p.wait().unwrap().success(), "{rest:?}");
    let devs: Vec<&str> = rest
        .iter()
        .filter_map(|l| l.strip_prefix("dev "))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(devs, vec![uuids[1].as_str(), uuids[3].as_str()], "{rest:?}");
}

#[test]
fn a_detached_gpu_gives_running_processes_no_more_memory() {
    let sb = Sandbox::new();
    let _e = env_with(&sb, "x1", Some("2gi"), &[0], false);
    let mut c = under_shim(&sb, "x1", shim_cuda());
    // A process holds 256 MiB while the environment is detached from its GPU.
    c.args(["link", "alloc", "mem", &(256 * MI).to_string(), "1", "hold"]);
    let held = spawn_held(c);
    let got = &held.before;
    assert!(got.iter().any(|l| l == "ok 1 err 0"), "{got:?}");
    sb.genv_in("x1", &["detach"]).ok();
    // A new process sees no GPU at all; the running one may still free what it holds.
    let o = run(&sb, Some("x1"), &["link", "view"], &[]);
    assert_eq!(field(&o.stdout, "init"), Some(vec!["100"]), "{o:?}");
    let (ok, rest) = held.finish();
    assert!(ok, "{rest:?}");
    assert!(rest.iter().any(|l| l == "freed 1"), "{rest:?}");
    // Its memory info after the detach: nothing free, nothing to offer.
    assert!(rest.iter().any(|l| l == "mem 0 0 0"), "{rest:?}");
}
