//! The binaries' behaviour on bad input: a clear error, nothing changed.

use std::{fs, path::Path, process::Command};

use ha_tests::agent::{PIN_ROOT, binary};

#[test]
fn a_bad_config_names_file_line_column_and_field_and_loads_nothing() {
    let node = format!("cli-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("ha-cli-{node}"));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ha.toml");
    let text = format!(
        "[node]\nname = \"{node}\"\ninterface = \"lo\"\n\n[[vip]]\naddress = \"198.18.0.300\"\nport = 80\nprotocol = \"tcp\"\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n"
    );
    fs::write(&path, text).unwrap();
    let out = Command::new(binary("ha-agent").unwrap())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ha-agent accepted a bad config: {stderr}"
    );
    let location = format!("{}:6:11: vip[0].address", path.display());
    assert!(
        stderr.contains(&location),
        "error does not name {location}: {stderr}"
    );
    assert!(
        !Path::new(PIN_ROOT).join(&node).exists(),
        "a bad config must load nothing"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hactl_maps_without_a_datapath_fails_clearly() {
    let missing = format!("{PIN_ROOT}/absent-{}", std::process::id());
    let out = Command::new(binary("hactl").unwrap())
        .args(["maps", "--pin-dir", &missing])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code 2: nothing to talk to; {stderr}"
    );
    assert!(
        stderr.contains("no datapath pinned at") && stderr.contains(&missing),
        "{stderr}"
    );
}

#[test]
fn hactl_prints_completions_and_its_manual_page() {
    let run = |args: &[&str]| {
        let out = Command::new(binary("hactl").unwrap())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_hactl()") && bash.contains("drain"),
        "{bash}"
    );
    let man = run(&["man"]);
    assert!(
        man.contains(".TH hactl 1") && man.contains("failover"),
        "{man}"
    );
}
