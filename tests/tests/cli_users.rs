//! Two users on one state file: both can use genv (the directory is 1777 and the file 0666 even
//! when the first user has umask 077), and neither can change, detach or deactivate the other's
//! environment. Needs root to switch users (CI runs as root); skips with a reason otherwise.

use genv_tests::support;

use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use support::*;

#[test]
fn two_users_share_the_state_but_not_their_environments() {
    if !can_switch_users() {
        return;
    }
    let u1 = user("genv-test1", 61001);
    let u2 = user("genv-test2", 61002);
    let sb = Sandbox::new();
    // Like /tmp: anyone may create the state directory here.
    std::fs::set_permissions(&sb.root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    for d in [&sb.home, &sb.work] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // u1 comes first, with umask 077: the directory and file must still be shared.
    genv_as(&sb, &u1, None, &["envs"]).ok();
    let dir = std::fs::metadata(&sb.tmpdir).unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o1777);
    let file = std::fs::metadata(sb.state_path()).unwrap();
    assert_eq!(file.permissions().mode() & 0o7777, 0o666);
    assert_eq!(file.uid(), u1.uid);

    let e1 = env_as(&sb, &u1, &["--name", "one", "--gpus", "1"]);
    let e2 = env_as(&sb, &u2, &["--name", "two", "--gpus", "1"]);
    let j = sb.envs_json();
    assert_eq!(j.as_array().unwrap().len(), 2);
    assert_eq!(j[0]["uid"], u1.uid);
    assert_eq!(j[0]["username"], u1.name.as_str());
    assert_eq!(j[0]["attached"], json!([0]));
    assert_eq!(j[1]["uid"], u2.uid);
    assert_eq!(j[1]["attached"], json!([1]));
    let table = genv_as(&sb, &u2, None, &["envs"]);
    assert!(
        table.ok().contains(&format!("{}({})", u1.name, u1.uid)),
        "{table:?}"
    );

    // Each one may attach, and sees the other's devices as taken.
    genv_as(&sb, &u1, Some(&e1.eid), &["attach", "--index", "2"]).ok();
    genv_as(&sb, &u2, Some(&e2.eid), &["attach", "--index", "2"])
        .fails_with("Device 2 is not available");
    genv_as(&sb, &u2, Some(&e2.eid), &["attach", "--index", "3"]).ok();
    let out = genv_as(&sb, &u2, None, &["exec", "--", "genv", "status", "--json"]);
    assert_eq!(out.json()["attached"], json!([]));
    genv_as(&sb, &u2, None, &["exec", "--gpus", "1", "--", "true"])
        .fails_with("No available devices");

    // Neither may touch the other's environment.
    for (me, mine, theirs) in [(&u2, &e2, &e1), (&u1, &e1, &e2)] {
        let theirs_pid = theirs.holder.pid().to_string();
        let mine_pid = mine.holder.pid().to_string();
        let tries: Vec<Vec<&str>> = vec![
            vec!["config", "name", "stolen"],
            vec!["config", "gpus", "3"],
            vec!["config", "--clear"],
            vec!["attach"],
            vec!["attach", "--index", "0"],
            vec!["detach"],
            vec!["detach", "--index", "0"],
            vec!["deactivate", "--shell", "bash", "--shell-pid", &theirs_pid],
            vec!["deactivate", "--shell", "bash", "--shell-pid", &mine_pid],
        ];
        for args in &tries {
            let before = sb.tables_bytes();
            let out = genv_as(&sb, me, Some(&theirs.eid), args);
            let line = out.fails_with("belongs to");
            assert!(line.contains(&theirs.eid), "{line}");
            assert_eq!(out.stdout, "", "{args:?}");
            assert!(before == sb.tables_bytes(), "{args:?} changed the state");
        }
        // Nor join it under its id: identifiers are per user, so the same id makes an
        // environment of one's own beside theirs, and theirs stays exactly as it was.
        let theirs_before = sb.env_json(&theirs.eid).unwrap();
        genv_as(
            &sb,
            me,
            None,
            &[
                "activate",
                "--id",
                &theirs.eid,
                "--shell",
                "bash",
                "--shell-pid",
                &mine_pid,
            ],
        )
        .ok();
        let same_id: Vec<serde_json::Value> = sb
            .envs_json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["eid"] == theirs.eid.as_str())
            .cloned()
            .collect();
        assert_eq!(same_id.len(), 2, "{same_id:?}");
        assert!(
            same_id.contains(&theirs_before),
            "theirs changed: {same_id:?}"
        );
        assert!(same_id.iter().any(|e| e["uid"] == me.uid));
        // Its own environment of that id is what the user's commands now reach; ending it
        // leaves theirs alone.
        genv_as(
            &sb,
            me,
            Some(&theirs.eid),
            &["deactivate", "--shell", "bash", "--shell-pid", &mine_pid],
        )
        .ok();
        assert_eq!(sb.env_json(&theirs.eid).unwrap(), theirs_before);
        // Looking is fine.
        assert!(genv_as(&sb, me, Some(&theirs.eid), &["status"])
            .ok()
            .contains(&format!("Environment is active ({})", theirs.eid)));
    }
    let j = sb.envs_json();
    assert_eq!(j[0]["name"], "one");
    assert_eq!(j[0]["attached"], json!([0, 2]));
    assert_eq!(j[1]["name"], "two");
    assert_eq!(j[1]["attached"], json!([1, 3]));

    // Each can end their own.
    genv_as(
        &sb,
        &u2,
        Some(&e2.eid),
        &["deactivate", "--shell", "bash", "--shell-pid", &e2.eid],
    )
    .ok();
    assert_eq!(sb.eids(), vec![e1.eid.clone()]);
    // A dead environment of another user is reaped by anyone's write.
    drop(e1);
    let e3 = env_as(&sb, &u2, &["--gpus", "4"]);
    assert_eq!(
        sb.env_json(&e3.eid).unwrap()["attached"],
        json!([0, 1, 2, 3])
    );
    // The simulated machine's files are shared too (nvidia-smi runs as either user).
    let ledger = sb.simdir.join("ledger");
    if ledger.exists() {
        let m = std::fs::metadata(&ledger).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o666, "sim ledger mode");
    }
}
