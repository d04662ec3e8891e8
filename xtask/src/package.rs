//! `cargo xtask package`: the Debian package (.deb) of ha-agent and hactl.
//!
//! A staged tree packed by `dpkg-deb`, not cargo-deb: cargo-deb is one more
//! tool to `cargo install` (minutes of compiling on CI's two cores), while
//! dpkg-deb comes with every Debian system and dpkg-dev's `dpkg-shlibdeps`
//! and `dpkg-gencontrol`, the tools debhelper itself runs, compute Depends,
//! Installed-Size and Architecture. The package's metadata stays in Debian's
//! own formats in packaging/debian/; this module only stages files into
//! `debian/ha/` of a scratch directory, the layout those tools expect: the
//! binaries cargo built, and what they print about themselves (manual pages,
//! shell completions), so both never drift from the code.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::run;

/// The binary package's name (packaging/debian/control).
const PACKAGE: &str = "ha";
/// Where the .deb goes unless `--out` says otherwise.
pub(crate) const DEFAULT_OUT: &str = "target/debian";
/// The programs, installed in /usr/sbin: both need root (XDP, pinned maps,
/// the root-only control socket).
const PROGRAMS: [&str; 2] = ["ha-agent", "hactl"];
/// The unit in the repository names the programs in /usr/local/sbin, where
/// a hand install puts them; the package's are in /usr/sbin.
const UNIT: &str = "packaging/systemd/ha-agent.service";
const HAND_INSTALLED: &str = "/usr/local/sbin/";
const PACKAGED: &str = "/usr/sbin/";
/// The example config, a conffile (packaging/debian/conffiles).
const EXAMPLE_CONFIG: &str = "packaging/ha.toml";
/// Debian metadata: control and changelog feed dpkg-gencontrol, the rest is
/// copied as it is.
const DEBIAN_DIR: &str = "packaging/debian";
/// Maintainer scripts: the unit is neither enabled nor started on install.
const MAINTAINER_SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];
/// hactl's completion scripts: (shell, where that shell's vendor scripts go).
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "usr/share/bash-completion/completions/hactl"),
    ("zsh", "usr/share/zsh/vendor-completions/_hactl"),
    ("fish", "usr/share/fish/vendor_completions.d/hactl.fish"),
];

/// Packs the binaries in target/<profile>/ into `out`/ha_<version>_<arch>.deb
/// with dpkg-deb's `compression` and returns its path. The binaries must be
/// built already.
pub(crate) fn package(
    root: &Path,
    profile: &str,
    compression: &str,
    out: &Path,
) -> Result<PathBuf> {
    let version = changelog_version(root)?;
    let workspace_version = env!("CARGO_PKG_VERSION");
    if version != workspace_version {
        bail!(
            "{DEBIAN_DIR}/changelog is at {version}, the workspace at {workspace_version}: \
             add a changelog entry for {workspace_version}"
        );
    }
    // Cargo's output directory of the profile.
    let binaries = root.join("target").join(match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    });

    fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    // dpkg-shlibdeps and dpkg-gencontrol want debian/control next to the
    // tree they look at; a leftover from a failed run goes first.
    let work = out.join(".ha-package");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    }
    let tree = work.join("debian").join(PACKAGE);
    stage(root, &binaries, &tree)?;
    write_control(root, &work)?;
    write_md5sums(&tree)?;
    normalize_modes(&tree)?;

    let deb = out.join(format!(
        "{PACKAGE}_{version}_{}.deb",
        control_field(&tree, "Architecture")?
    ));
    run(Command::new("dpkg-deb")
        .arg(format!("-Z{compression}"))
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb))?;
    fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    Ok(deb)
}

/// The version of the newest entry in packaging/debian/changelog, from its
/// first line: `ha (VERSION) DISTRIBUTION; urgency=...`.
fn changelog_version(root: &Path) -> Result<String> {
    let path = root.join(DEBIAN_DIR).join("changelog");
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix(PACKAGE)
        .and_then(|rest| rest.trim_start().strip_prefix('('))
        .and_then(|rest| rest.split_once(')'))
        .map(|(version, _)| version.to_string())
        .with_context(|| {
            format!(
                "{}: first line is not `{PACKAGE} (VERSION) ...`",
                path.display()
            )
        })
}

/// Everything the package installs, below `tree`.
fn stage(root: &Path, binaries: &Path, tree: &Path) -> Result<()> {
    for program in PROGRAMS {
        let built = binaries.join(program);
        if !built.is_file() {
            bail!(
                "{} is missing: build it (cargo build -p ha-agent --bins) or leave out --no-build",
                built.display()
            );
        }
        let staged = tree.join("usr/sbin").join(program);
        create_parent(&staged)?;
        fs::copy(&built, &staged)
            .with_context(|| format!("copy {} to {}", built.display(), staged.display()))?;
        // What dh_strip does: no symbols or debug info in the package.
        run(Command::new("strip")
            .args([
                "--remove-section=.comment",
                "--remove-section=.note",
                "--strip-unneeded",
            ])
            .arg(&staged))?;
        set_mode(&staged, 0o755)?;
    }
    let program = |name: &str| tree.join("usr/sbin").join(name);

    let unit = read(root, UNIT)?;
    install(
        tree,
        "usr/lib/systemd/system/ha-agent.service",
        packaged_unit(&unit)?.as_bytes(),
    )?;
    install(
        tree,
        "etc/ha/ha.toml",
        read(root, EXAMPLE_CONFIG)?.as_bytes(),
    )?;

    for (name, page) in [
        (
            "ha-agent",
            captured(Command::new(program("ha-agent")).arg("--man"))?,
        ),
        (
            "hactl",
            captured(Command::new(program("hactl")).arg("man"))?,
        ),
    ] {
        // Each program says its section (`.TH NAME SECTION ...`): 8 for the
        // daemon, 1 for hactl, as `hactl man` renders it.
        let section = man_section(&page).with_context(|| format!("{name}'s manual page"))?;
        install_gzipped(
            tree,
            &format!("usr/share/man/man{section}/{name}.{section}"),
            &page,
        )?;
    }
    for (shell, path) in COMPLETIONS {
        let script = captured(Command::new(program("hactl")).args(["completions", shell]))?;
        install(tree, path, &script)?;
    }

    let debian = |file: &str| read(root, &format!("{DEBIAN_DIR}/{file}"));
    install(
        tree,
        "usr/share/doc/ha/copyright",
        debian("copyright")?.as_bytes(),
    )?;
    // A native package's changelog is changelog.gz (Debian policy 12.7).
    install_gzipped(
        tree,
        "usr/share/doc/ha/changelog",
        debian("changelog")?.as_bytes(),
    )?;
    install(tree, "DEBIAN/conffiles", debian("conffiles")?.as_bytes())?;
    for script in MAINTAINER_SCRIPTS {
        let path = format!("DEBIAN/{script}");
        install(tree, &path, debian(script)?.as_bytes())?;
        set_mode(&tree.join(path), 0o755)?;
    }
    Ok(())
}

/// The repository's unit with the programs in /usr/sbin: every `Exec*=`
/// line is rewritten; any other mention of /usr/local outside a comment is
/// an error, so a new setting cannot point at a hand install unnoticed.
fn packaged_unit(unit: &str) -> Result<String> {
    let mut packaged = String::with_capacity(unit.len());
    let mut rewritten = 0;
    for line in unit.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("Exec") && line.contains(HAND_INSTALLED) {
            packaged.push_str(&line.replace(HAND_INSTALLED, PACKAGED));
            rewritten += 1;
        } else if trimmed.starts_with(['#', ';']) || !line.contains("/usr/local") {
            packaged.push_str(line);
        } else {
            bail!("{UNIT}: a line outside Exec*= names /usr/local: {line}");
        }
        packaged.push('\n');
    }
    if rewritten == 0 {
        bail!("{UNIT}: no Exec*= line names {HAND_INSTALLED}");
    }
    Ok(packaged)
}

/// The section of a roff manual page, from its `.TH NAME SECTION` line.
fn man_section(page: &[u8]) -> Result<String> {
    String::from_utf8_lossy(page)
        .lines()
        .find_map(|line| {
            let mut words = line.strip_prefix(".TH ")?.split_whitespace();
            words.next()?;
            words.next().map(str::to_string)
        })
        .context("no `.TH NAME SECTION` line")
}

/// DEBIAN/control, from packaging/debian/control with `${shlibs:Depends}`
/// from the staged binaries, the version from the changelog and the host's
/// architecture (for `Architecture: any`).
fn write_control(root: &Path, work: &Path) -> Result<()> {
    let debian = work.join("debian");
    for file in ["control", "changelog"] {
        let from = root.join(DEBIAN_DIR).join(file);
        fs::copy(&from, debian.join(file))
            .with_context(|| format!("copy {} to {}", from.display(), debian.display()))?;
    }
    let tree = format!("debian/{PACKAGE}");
    let mut shlibdeps = Command::new("dpkg-shlibdeps");
    for program in PROGRAMS {
        shlibdeps.arg(format!("{tree}/usr/sbin/{program}"));
    }
    run(shlibdeps.current_dir(work))
        .context("dpkg-shlibdeps (Debian package dpkg-dev; cargo xtask setup installs it)")?;
    run(Command::new("dpkg-gencontrol")
        .arg(format!("-p{PACKAGE}"))
        .arg(format!("-P{tree}"))
        .current_dir(work))
}

/// DEBIAN/md5sums, what `dpkg --verify` and debsums check an installed
/// package against: every file but the control files and the conffiles
/// (dpkg keeps their sums itself), as dh_md5sums writes it.
fn write_md5sums(tree: &Path) -> Result<()> {
    let conffiles = fs::read_to_string(tree.join("DEBIAN/conffiles"))?;
    let mut files = Vec::new();
    for path in paths_below(tree)? {
        if !fs::symlink_metadata(&path)?.is_file() {
            continue;
        }
        let relative = path.strip_prefix(tree)?;
        let absolute = Path::new("/").join(relative);
        if !relative.starts_with("DEBIAN") && !conffiles.lines().any(|c| Path::new(c) == absolute) {
            files.push(relative.to_path_buf());
        }
    }
    files.sort();
    let sums = captured(
        Command::new("md5sum")
            .arg("--")
            .args(&files)
            .current_dir(tree),
    )?;
    install(tree, "DEBIAN/md5sums", &sums)
}

/// A field of the staged DEBIAN/control.
fn control_field(tree: &Path, name: &str) -> Result<String> {
    let path = tree.join("DEBIAN/control");
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
        .with_context(|| format!("{}: no {name} field", path.display()))
}

/// Directories 0755, files 0644 unless already executable (programs and
/// maintainer scripts, set by `stage`), whatever the umask was.
fn normalize_modes(tree: &Path) -> Result<()> {
    set_mode(tree, 0o755)?;
    for path in paths_below(tree)? {
        let meta = fs::symlink_metadata(&path)?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        set_mode(
            &path,
            if meta.is_dir() || executable {
                0o755
            } else {
                0o644
            },
        )?;
    }
    Ok(())
}

/// The files and directories below `dir`, recursively.
fn paths_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if fs::symlink_metadata(&path)?.is_dir() {
            paths.extend(paths_below(&path)?);
        }
        paths.push(path);
    }
    Ok(paths)
}

/// A repository file's text.
fn read(root: &Path, path: &str) -> Result<String> {
    fs::read_to_string(root.join(path)).with_context(|| format!("read {path}"))
}

/// Writes `contents` to `tree`/`path`.
fn install(tree: &Path, path: &str, contents: &[u8]) -> Result<()> {
    let path = tree.join(path);
    create_parent(&path)?;
    fs::write(&path, contents).with_context(|| format!("write {}", path.display()))
}

/// Writes `contents` gzipped to `tree`/`path`.gz, without name or time
/// stamp (`gzip -9n`, as Debian policy wants for manual pages).
fn install_gzipped(tree: &Path, path: &str, contents: &[u8]) -> Result<()> {
    install(tree, path, contents)?;
    run(Command::new("gzip").arg("-9n").arg(tree.join(path)))
}

fn create_parent(path: &Path) -> Result<()> {
    let dir = path.parent().context("a path in the tree has a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// What `cmd` prints on stdout; an error if it fails.
fn captured(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}
