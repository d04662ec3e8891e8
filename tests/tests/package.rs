//! `cargo xtask package`: the .deb holds exactly what an install needs,
//! with Debian's metadata, and the ha-agent in it accepts the example
//! config it ships.
//!
//! It packs the debug binaries `cargo build --workspace --bins` (and so
//! `cargo xtask test`) left in target/debug (`--profile dev --no-build`):
//! what is tested is the packing, and a release build would double the CI's
//! build time. It runs the xtask binary built next to them, not
//! `cargo xtask`, so no cargo runs inside the test run.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use ha_tests::agent::binary;

/// Every file and directory of the package with its mode, as `dpkg-deb -c`
/// lists them; all are root's.
const CONTENTS: [(&str, &str); 30] = [
    ("drwxr-xr-x", "./"),
    ("drwxr-xr-x", "./etc/"),
    ("drwxr-xr-x", "./etc/ha/"),
    ("-rw-r--r--", "./etc/ha/ha.toml"),
    ("drwxr-xr-x", "./usr/"),
    ("drwxr-xr-x", "./usr/lib/"),
    ("drwxr-xr-x", "./usr/lib/systemd/"),
    ("drwxr-xr-x", "./usr/lib/systemd/system/"),
    ("-rw-r--r--", "./usr/lib/systemd/system/ha-agent.service"),
    ("drwxr-xr-x", "./usr/sbin/"),
    ("-rwxr-xr-x", "./usr/sbin/ha-agent"),
    ("-rwxr-xr-x", "./usr/sbin/hactl"),
    ("drwxr-xr-x", "./usr/share/"),
    ("drwxr-xr-x", "./usr/share/bash-completion/"),
    ("drwxr-xr-x", "./usr/share/bash-completion/completions/"),
    (
        "-rw-r--r--",
        "./usr/share/bash-completion/completions/hactl",
    ),
    ("drwxr-xr-x", "./usr/share/doc/"),
    ("drwxr-xr-x", "./usr/share/doc/ha/"),
    ("-rw-r--r--", "./usr/share/doc/ha/changelog.gz"),
    ("-rw-r--r--", "./usr/share/doc/ha/copyright"),
    ("drwxr-xr-x", "./usr/share/fish/"),
    ("drwxr-xr-x", "./usr/share/fish/vendor_completions.d/"),
    (
        "-rw-r--r--",
        "./usr/share/fish/vendor_completions.d/hactl.fish",
    ),
    ("drwxr-xr-x", "./usr/share/man/"),
    ("drwxr-xr-x", "./usr/share/man/man8/"),
    ("-rw-r--r--", "./usr/share/man/man8/ha-agent.8.gz"),
    ("-rw-r--r--", "./usr/share/man/man8/hactl.8.gz"),
    ("drwxr-xr-x", "./usr/share/zsh/"),
    ("drwxr-xr-x", "./usr/share/zsh/vendor-completions/"),
    ("-rw-r--r--", "./usr/share/zsh/vendor-completions/_hactl"),
];

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs `cmd`, asserts it succeeded, returns its stdout.
fn stdout(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A gzipped file's text.
fn gunzip(path: &Path) -> String {
    stdout(Command::new("gzip").arg("-dc").arg(path))
}

#[test]
fn the_deb_installs_programs_unit_conffile_manuals_and_completions() {
    let dir = std::env::temp_dir().join(format!("ha-package-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let out = dir.join("out");
    let printed = stdout(
        Command::new(binary("xtask").unwrap())
            .args(["package", "--profile", "dev", "--no-build"])
            // xz, the default, takes ten times as long.
            .args(["--compression", "zstd", "--out"])
            .arg(&out),
    );

    // One .deb, named as Debian names them, and no staging left behind.
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"));
    let version = env!("CARGO_PKG_VERSION");
    let deb = out.join(format!("ha_{version}_{}.deb", arch.trim()));
    assert!(printed.contains(&*deb.to_string_lossy()), "{printed}");
    let left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [deb.file_name().unwrap()], "in {}", out.display());

    // The exact file list, modes and owner.
    let listing = stdout(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let mut listed = Vec::new();
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [mode, owner, _size, _date, _time, path] = words[..] else {
            panic!("unexpected dpkg-deb --contents line: {line}");
        };
        assert_eq!(owner, "root/root", "{path}");
        listed.push((mode.to_string(), path.to_string()));
    }
    listed.sort();
    let mut expected: Vec<(String, String)> = CONTENTS
        .iter()
        .map(|&(mode, path)| (mode.to_string(), path.to_string()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    // The control fields.
    let info = stdout(Command::new("dpkg-deb").arg("--field").arg(&deb));
    let fields: BTreeMap<&str, &str> = info
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_once(": "))
        .collect();
    assert_eq!(fields["Package"], "ha");
    assert_eq!(fields["Version"], version, "the workspace version");
    assert_eq!(fields["Architecture"], arch.trim());
    assert_eq!(fields["Section"], "net");
    assert_eq!(fields["Priority"], "optional");
    assert!(fields["Maintainer"].contains('@'), "{info}");
    assert!(
        fields["Description"].starts_with("XDP load balancer"),
        "{info}"
    );
    assert!(
        fields["Installed-Size"].parse::<u64>().unwrap() > 0,
        "{info}"
    );
    // From dpkg-shlibdeps: at least the C library, with a minimum version.
    assert!(fields["Depends"].contains("libc6 (>= 2."), "{info}");

    // The control archive: the conffile, the sums and the maintainer scripts.
    let control = dir.join("control");
    stdout(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(&deb)
            .arg(&control),
    );
    assert_eq!(
        fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/ha/ha.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let text = fs::read_to_string(control.join(script)).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
        // Installing neither enables nor starts the agent: the example
        // config must be edited first.
        let commands: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        assert!(
            commands
                .iter()
                .all(|l| !l.contains("enable") && !l.contains(" start")),
            "{script}: {commands:#?}"
        );
        stdout(Command::new("sh").arg("-n").arg(control.join(script)));
    }

    // Unpacked into a scratch root.
    let root = dir.join("root");
    stdout(
        Command::new("dpkg-deb")
            .arg("--extract")
            .arg(&deb)
            .arg(&root),
    );
    assert_eq!(
        fs::read(root.join("etc/ha/ha.toml")).unwrap(),
        fs::read(repository("packaging/ha.toml")).unwrap(),
        "the example config as it is"
    );

    // Every file but the conffile has its sum, and it is right.
    let sums = fs::read_to_string(control.join("md5sums")).unwrap();
    let summed: Vec<String> = sums.lines().map(|l| format!("./{}", &l[34..])).collect();
    let mut files: Vec<String> = CONTENTS
        .iter()
        .filter(|(mode, path)| mode.starts_with('-') && *path != "./etc/ha/ha.toml")
        .map(|(_, path)| path.to_string())
        .collect();
    files.sort();
    assert_eq!(summed, files);
    stdout(
        Command::new("md5sum")
            .args(["--check", "--quiet"])
            .arg(control.join("md5sums"))
            .current_dir(&root),
    );

    // The repository's unit, with the packaged programs.
    let unit = fs::read_to_string(root.join("usr/lib/systemd/system/ha-agent.service")).unwrap();
    let hand_installed =
        fs::read_to_string(repository("packaging/systemd/ha-agent.service")).unwrap();
    let rewritten: String = hand_installed
        .lines()
        .map(|line| match line.starts_with("Exec") {
            true => line.replace("/usr/local/sbin/", "/usr/sbin/") + "\n",
            false => format!("{line}\n"),
        })
        .collect();
    assert_eq!(unit, rewritten, "only the Exec*= lines change");
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/sbin/ha-agent --config /etc/ha/ha.toml")),
        "{unit}"
    );
    assert!(
        unit.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| !l.contains("/usr/local")),
        "{unit}"
    );

    // Manual pages in the section their header names, gzipped.
    let agent_page = gunzip(&root.join("usr/share/man/man8/ha-agent.8.gz"));
    assert!(agent_page.contains(".TH ha-agent 8 "), "{agent_page}");
    assert!(agent_page.contains("keep\\-datapath"), "{agent_page}");
    let hactl_page = gunzip(&root.join("usr/share/man/man8/hactl.8.gz"));
    assert!(hactl_page.contains(".TH hactl 8 "), "{hactl_page}");

    // Completions, one per shell, for hactl.
    for path in [
        "usr/share/bash-completion/completions/hactl",
        "usr/share/zsh/vendor-completions/_hactl",
        "usr/share/fish/vendor_completions.d/hactl.fish",
    ] {
        let script = fs::read_to_string(root.join(path)).unwrap();
        assert!(
            script.contains("hactl") && script.contains("drain"),
            "{path}"
        );
    }

    // The packaged agent accepts the packaged config, touching nothing.
    let config = root.join("etc/ha/ha.toml");
    let out = Command::new(root.join("usr/sbin/ha-agent"))
        .arg("--check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ha-agent --check {}: {}\n{}",
        config.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: ok\n", config.display())
    );

    fs::remove_dir_all(&dir).unwrap();
}
