//! The binaries' behaviour on bad input: a clear error, nothing changed.
//! And the config check (`ha-agent --check`, `hactl check-config`): `ok` or
//! the located error, exit 0 or 1, nothing touched.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

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
        man.contains(".TH hactl 8") && man.contains("failover"),
        "{man}"
    );
}

/// A config file to check, alone in its own directory, with the paths the
/// agent would write (pins, control socket) inside that directory too.
struct CheckFile {
    dir: PathBuf,
    path: PathBuf,
}

impl CheckFile {
    /// The lines that matter: 11 `port = 80` of the VIP, 14 the backend's
    /// `address`.
    fn good(label: &str) -> (CheckFile, String) {
        let dir = std::env::temp_dir().join(format!("ha-check-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "[node]\nname = \"check-{label}\"\ninterface = \"lo\"\ncontrol_socket = \"{dir}/control.sock\"\n\n[datapath]\npin_dir = \"{dir}/pins\"\n\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n",
            dir = dir.display()
        );
        let path = dir.join("ha.toml");
        (CheckFile { dir, path }, text)
    }

    /// Runs `ha-agent --check` and `hactl check-config` on `text`; checks
    /// that neither wrote anything next to the file.
    fn check(&self, text: &str) -> [(&'static str, Output); 2] {
        fs::write(&self.path, text).unwrap();
        let agent = Command::new(binary("ha-agent").unwrap())
            .arg("--check")
            .arg("--config")
            .arg(&self.path)
            .output()
            .unwrap();
        // hactl's --config is global: after the subcommand too.
        let hactl = Command::new(binary("hactl").unwrap())
            .arg("check-config")
            .arg("--config")
            .arg(&self.path)
            .output()
            .unwrap();
        let left: Vec<PathBuf> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            left,
            std::slice::from_ref(&self.path),
            "the check must touch nothing"
        );
        [("ha-agent --check", agent), ("hactl check-config", hactl)]
    }
}

impl Drop for CheckFile {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn config_check_of_a_good_file_prints_ok_and_touches_nothing() {
    let (file, text) = CheckFile::good("ok");
    for (how, out) in file.check(&text) {
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{how}: {stdout}{stderr}");
        assert_eq!(stdout, format!("{}: ok\n", file.path.display()), "{how}");
        assert_eq!(stderr, "", "{how}");
    }
    assert!(
        !Path::new(PIN_ROOT).join("check-ok").exists(),
        "the check must load nothing"
    );
}

#[test]
fn config_check_of_a_bad_file_prints_the_located_error_and_exits_1() {
    let (file, good) = CheckFile::good("bad");
    for (bad, (line, column, field), message) in [
        // TOML syntax.
        (
            good.replacen("port = 80", "port = = 80", 1),
            (11, 8, "vip[0].port"),
            "",
        ),
        // A field the schema does not have.
        (
            good.replacen("port = 80\n", "port = 80\nmode = \"dsr\"\n", 1),
            (12, 1, "vip[0].mode"),
            "unknown field `mode`",
        ),
        // A value the checks reject.
        (
            good.replacen("198.18.0.11", "198.18.0.300", 1),
            (14, 13, "vip[0].backend[0].address"),
            "`198.18.0.300` is not an IPv4 or IPv6 address",
        ),
    ] {
        let location = format!("{}:{line}:{column}: {field}: ", file.path.display());
        for (how, out) in file.check(&bad) {
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert_eq!(out.status.code(), Some(1), "{how}: {stdout}{stderr}");
            assert_eq!(stdout, "", "{how}");
            assert!(
                stderr.starts_with(&location) && stderr.contains(message),
                "{how}: expected `{location}...{message}`, got: {stderr}"
            );
            assert_eq!(stderr.lines().count(), 1, "{how}: one line: {stderr}");
        }
    }
}
