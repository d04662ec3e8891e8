//! packaging/systemd/ha-agent.service: what the agent relies on is in it
//! (always checked), and systemd itself accepts every line of it
//! (`systemd-analyze verify`, where the machine has it).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use ha_agent::config::{DEFAULT_CONTROL_DIR, DEFAULT_PIN_DIR};

const UNIT_NAME: &str = "ha-agent.service";
const CAPABILITIES: [&str; 4] = ["CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_PERFMON"];

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/systemd")
        .join(UNIT_NAME)
}

fn unit_text() -> String {
    let path = unit_path();
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A unit file as (section, key, value) in file order; keys may repeat.
struct Unit(Vec<(String, String, String)>);

impl Unit {
    /// systemd's syntax: `[Section]`, `Key=Value`, `#`/`;` comments, and a
    /// trailing backslash continuing a line.
    fn parse(text: &str) -> Unit {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
                continue;
            }
            if let Some(body) = line.strip_suffix('\\') {
                pending.push_str(body);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let line = std::mem::take(&mut pending);
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=Value in [{section}]: {line}"));
            entries.push((
                section.clone(),
                key.trim().to_string(),
                value.trim().to_string(),
            ));
        }
        Unit(entries)
    }

    /// Every value of `key` in `section`.
    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The one value of `key` in `section`.
    fn one(&self, section: &str, key: &str) -> &str {
        match self.all(section, key)[..] {
            [value] => value,
            ref values => panic!("[{section}] {key}= set {} times", values.len()),
        }
    }

    /// A list setting's words, over all its assignments.
    fn words(&self, section: &str, key: &str) -> BTreeSet<&str> {
        self.all(section, key)
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect()
    }
}

#[test]
fn unit_is_notify_with_watchdog_and_least_capabilities() {
    let unit = Unit::parse(&unit_text());
    let service = "Service";

    assert_eq!(unit.one(service, "Type"), "notify");
    assert_eq!(unit.one(service, "NotifyAccess"), "main");
    assert_eq!(unit.one(service, "WatchdogSec"), "5s");
    assert_eq!(unit.one(service, "Restart"), "on-failure");
    // A bad file fails the start before anything is loaded.
    assert_eq!(
        unit.one(service, "ExecStartPre"),
        "/usr/local/sbin/ha-agent --check --config /etc/ha/ha.toml"
    );
    // Checked first, then synchronous: `systemctl reload` fails with the
    // error.
    assert_eq!(
        unit.all(service, "ExecReload"),
        [
            "/usr/local/sbin/ha-agent --check --config /etc/ha/ha.toml",
            "/usr/local/sbin/hactl --config /etc/ha/ha.toml reload"
        ]
    );

    let start: Vec<&str> = unit.one(service, "ExecStart").split_whitespace().collect();
    assert_eq!(
        start,
        [
            "/usr/local/sbin/ha-agent",
            "--config",
            "/etc/ha/ha.toml",
            "--keep-datapath"
        ],
        "ExecStart (restarts must keep the datapath)"
    );

    let wanted: BTreeSet<&str> = CAPABILITIES.into_iter().collect();
    assert_eq!(unit.words(service, "CapabilityBoundingSet"), wanted);
    assert_eq!(unit.words(service, "AmbientCapabilities"), wanted);

    // Where the agent writes by default must be writable in the sandbox.
    let writable = unit.words(service, "ReadWritePaths");
    for path in [DEFAULT_PIN_DIR, DEFAULT_CONTROL_DIR] {
        assert!(
            writable.iter().any(|w| Path::new(path).starts_with(w)),
            "{path} is not under ReadWritePaths={writable:?}"
        );
    }
    assert_eq!(
        Path::new("/run").join(unit.one(service, "RuntimeDirectory")),
        Path::new(DEFAULT_CONTROL_DIR)
    );
    // The incarnation must survive a stop, which deletes the runtime
    // directory: systemd keeps /var/lib/<StateDirectory> and passes it as
    // $STATE_DIRECTORY (writable under ProtectSystem=strict).
    assert_eq!(unit.one(service, "StateDirectory"), "ha");
    assert_eq!(unit.one(service, "ProtectSystem"), "strict");
    assert_eq!(unit.one(service, "MemoryDenyWriteExecute"), "yes");
    // It would mount /sys/fs/bpf read-only whatever ReadWritePaths= says.
    assert!(
        unit.all(service, "ProtectKernelTunables").is_empty(),
        "ProtectKernelTunables= makes the pins unwritable"
    );
    assert_eq!(
        unit.one("Install", "WantedBy"),
        "multi-user.target",
        "systemctl enable needs an [Install] section"
    );
}

/// `systemd-analyze` on the PATH, if the machine has it.
fn systemd_analyze() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-analyze"))
        .find(|candidate| candidate.is_file())
}

/// Runs `systemd-analyze verify` on `text` saved as ha-agent.service in a
/// fresh directory; returns the exit success and the lines about the unit.
fn verify(analyze: &Path, text: &str, label: &str) -> (bool, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("ha-systemd-unit-{}-{label}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(UNIT_NAME);
    fs::write(&path, text).unwrap();
    // --man=no: Documentation= man pages are not what is checked here.
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    fs::remove_dir_all(&dir).unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_unit = printed
        .lines()
        .filter(|l| l.contains(UNIT_NAME))
        .map(str::to_string)
        .collect();
    (out.status.success(), about_unit)
}

/// What systemd prints for a line it does not understand (unknown keys and
/// sections, unparsable values) and then ignores.
fn complaints(lines: &[String]) -> Vec<&String> {
    const MARKERS: [&str; 6] = [
        "Unknown key",
        "Unknown section",
        "Unknown lvalue",
        "Failed to parse",
        "ignoring",
        "Ignoring",
    ];
    lines
        .iter()
        .filter(|l| MARKERS.iter().any(|m| l.contains(m)))
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Some(analyze) = systemd_analyze() else {
        println!("skipped: systemd-analyze is not on the PATH (Debian package `systemd`)");
        return;
    };
    // verify checks that the programs exist: point them at the build.
    let mut text = unit_text();
    for (key, name) in [
        ("ExecStartPre", "ha-agent"),
        ("ExecStart", "ha-agent"),
        ("ExecReload", "ha-agent"),
        ("ExecReload", "hactl"),
    ] {
        let program = ha_tests::agent::binary(name).unwrap_or_else(|e| {
            println!("{e:#}; verifying with {key}= naming this test binary instead");
            std::env::current_exe().unwrap()
        });
        let installed = format!("{key}=/usr/local/sbin/{name} ");
        assert!(
            text.contains(&installed),
            "no `{installed}` line to rewrite"
        );
        text = text.replace(&installed, &format!("{key}={} ", program.display()));
    }

    let (success, lines) = verify(&analyze, &text, "unit");
    let bad = complaints(&lines);
    assert!(bad.is_empty(), "systemd does not accept: {bad:#?}");
    assert!(
        success,
        "systemd-analyze verify failed; about the unit: {lines:#?}"
    );

    // The check above sees what it looks for: a misspelt key is reported.
    let misspelt = text.replace("WatchdogSec=", "WatchDogSec=");
    let (_, lines) = verify(&analyze, &misspelt, "misspelt");
    assert!(
        !complaints(&lines).is_empty(),
        "systemd-analyze did not report WatchDogSec=; it printed: {lines:#?}"
    );
}
