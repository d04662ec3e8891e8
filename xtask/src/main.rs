//! Project tasks, so a newcomer needs nothing but cargo: `cargo xtask setup`
//! installs what is missing, `build-ebpf` builds the kernel side with the
//! nightly, `test`, `demo` and `bench` run everything on top of those;
//! `package` builds the Debian package.

mod package;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Debian packages the build and the lab need.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "ethtool",
    "iputils-ping",
    // dpkg-shlibdeps and dpkg-gencontrol for `package` and its test.
    "dpkg-dev",
    // lab_https: a real TLS backend.
    "nginx-light",
];
/// What `build` and `package` build: the two shipped programs alone, so
/// that features only the tests and benchmarks enable (ha-agent's `bench`)
/// stay out of them, as they would not with `--workspace`.
const SHIPPED_BUILD: &[&str] = &["build", "-p", "ha-agent", "--bins"];
/// Debian packages `bench failover` needs besides: the keepalived it
/// compares against, and the font its plot's text is drawn with.
const FAILOVER_BENCH_PACKAGES: &[&str] = &["keepalived", "fonts-dejavu-core"];
/// bpf-linker's LLVM must be the nightly's (LLVM 22), see docs/development.md.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Where `build-ebpf` leaves the object; ha-agent's build.rs embeds it.
const EBPF_OBJECT: &str = "ha-ebpf/target/bpfel-unknown-none/release/ha-xdp";
/// Where `build-ebpf --build-id N` builds (its own target directory, so
/// the default object above stays as it is).
const BUILD_ID_TARGET: &str = "ha-ebpf/target/build-id";
/// The build id of the other build the upgrade lab test swaps in, and
/// where `test` puts it (tests/tests/lab_upgrade.rs reads it there).
const UPGRADE_TEST_BUILD_ID: u32 = 1;
const UPGRADE_TEST_OBJECT: &str = "ha-ebpf/target/ha-xdp-build-1";

#[derive(Parser)]
#[command(about = "ha project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install missing prerequisites (apt packages, rust-src, bpf-linker, nextest).
    Setup,
    /// Build the XDP program (nightly, bpfel-unknown-none).
    BuildEbpf {
        /// Compile this id into the program: another build to the kernel
        /// (another program tag), for trying upgrades. Built in
        /// ha-ebpf/target/build-id/; the default object is left alone.
        #[arg(long, value_name = "N")]
        build_id: Option<u32>,
        /// Copy the object here as well; with --build-id the default is
        /// ha-ebpf/target/ha-xdp-build-N.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Build everything in release mode.
    Build,
    /// Set up, build, then run every test (unit, datapath, lab).
    Test {
        /// Extra arguments for cargo nextest (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the demo lab with live traffic.
    Demo,
    /// Run a benchmark and record it in docs/benchmarks.md.
    Bench {
        /// Which benchmark: datapath, switchover, failover.
        name: String,
    },
    /// Build the Debian package (.deb) of ha-agent and hactl.
    Package {
        /// Cargo profile of the binaries: release, or dev for a quick
        /// package of a debug build.
        #[arg(long, default_value = "release", value_name = "NAME")]
        profile: String,
        /// Pack the binaries already in target/<profile>/ instead of
        /// setting up and building them.
        #[arg(long)]
        no_build: bool,
        /// dpkg-deb's compressor: xz (Debian's default, and every dpkg
        /// reads it), zstd (dpkg 1.21.18 and later; a fraction of xz's
        /// time), gzip or none.
        #[arg(long, default_value = "xz", value_name = "TYPE")]
        compression: String,
        /// Directory for the .deb [default: target/debian].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    // Paths on the command line are the caller's, not the workspace's.
    let caller_dir = std::env::current_dir()?;
    std::env::set_current_dir(&root)?;
    match cli.task {
        Task::Setup => setup(),
        Task::BuildEbpf { build_id, out } => {
            let out = out.map(|out| caller_dir.join(out));
            match build_id {
                Some(id) => build_ebpf_with_id(&root, id, out.as_deref()),
                None => {
                    build_ebpf(&root)?;
                    match out {
                        Some(out) => copy_object(&root.join(EBPF_OBJECT), &out),
                        None => Ok(()),
                    }
                }
            }
        }
        Task::Build => {
            setup()?;
            build_ebpf(&root)?;
            run(cargo().args(SHIPPED_BUILD).args(["--profile", "release"]))
        }
        Task::Test { args } => {
            setup()?;
            build_ebpf(&root)?;
            // The upgrade test swaps this other build in under traffic.
            build_ebpf_with_id(
                &root,
                UPGRADE_TEST_BUILD_ID,
                Some(&root.join(UPGRADE_TEST_OBJECT)),
            )?;
            // The lab tests run the real ha-agent and hactl binaries.
            run(cargo().args(["build", "--workspace", "--bins"]))?;
            run(cargo()
                .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .args(args))
        }
        Task::Demo => {
            setup()?;
            build_ebpf(&root)?;
            run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
            run(&mut Command::new(root.join("target/release/ha-demo")))
        }
        Task::Bench { name } => {
            setup()?;
            if name == "failover" {
                apt_install_missing(FAILOVER_BENCH_PACKAGES)?;
            }
            build_ebpf(&root)?;
            run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
            run(Command::new(root.join("target/release/ha-bench")).arg(name))
        }
        Task::Package {
            profile,
            no_build,
            compression,
            out,
        } => {
            if !no_build {
                setup()?;
                build_ebpf(&root)?;
                run(cargo().args(SHIPPED_BUILD).args(["--profile", &profile]))?;
            }
            let out = out.map_or_else(
                || root.join(package::DEFAULT_OUT),
                |out| caller_dir.join(out),
            );
            let deb = package::package(&root, &profile, &compression, &out)?;
            println!("package: {}", deb.display());
            Ok(())
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The rustup proxy, so `+nightly` works; variables the outer cargo set
/// for us must not leak into the inner build.
fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn step(what: &str) {
    println!("setup: {what}");
}

/// Each step checks first and only acts when something is missing, so a
/// second run changes nothing.
fn setup() -> Result<()> {
    apt_install_missing(APT_PACKAGES)?;

    if !succeeds(cargo().args(["+nightly", "--version"])) {
        bail!("the nightly toolchain is missing: rustup toolchain install nightly");
    }
    if output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .lines()
    .any(|l| l.starts_with("rust-src"))
    {
        step("nightly rust-src present");
    } else {
        step("rustup component add rust-src --toolchain nightly");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }

    if output(Command::new("bpf-linker").arg("--version")).contains(BPF_LINKER_VERSION) {
        step(&format!("bpf-linker {BPF_LINKER_VERSION} present"));
    } else {
        step(&format!(
            "installing bpf-linker {BPF_LINKER_VERSION} for LLVM 22 (a few minutes)"
        ));
        run(cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX))?;
    }

    if succeeds(cargo().args(["nextest", "--version"])) {
        step("cargo-nextest present");
    } else {
        step("installing cargo-nextest");
        run(cargo().args(["install", "cargo-nextest", "--locked"]))?;
    }
    Ok(())
}

/// Installs those of `packages` that dpkg does not list as installed.
fn apt_install_missing(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .contains("install ok installed")
        })
        .collect();
    if missing.is_empty() {
        step("apt packages present");
    } else {
        step(&format!("installing {}", missing.join(" ")));
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    Ok(())
}

fn build_ebpf(root: &Path) -> Result<()> {
    // Always into ha-ebpf/target, where ha-agent's build.rs looks, even
    // when the caller set CARGO_TARGET_DIR for the user-space crates.
    run(cargo()
        .args(["+nightly", "build", "--release"])
        .env_remove("HA_BUILD_ID")
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(root.join("ha-ebpf")))?;
    println!("build-ebpf: {}", root.join(EBPF_OBJECT).display());
    Ok(())
}

/// The same program with `id` compiled in (ha-ebpf reads HA_BUILD_ID), in
/// its own target directory; copied to `out`, by default
/// ha-ebpf/target/ha-xdp-build-<id>. The first build there compiles core
/// too (under a minute); later ones take about a second.
fn build_ebpf_with_id(root: &Path, id: u32, out: Option<&Path>) -> Result<()> {
    let started = Instant::now();
    let target_dir = root.join(BUILD_ID_TARGET);
    run(cargo()
        .args(["+nightly", "build", "--release", "--target-dir"])
        .arg(&target_dir)
        .env("HA_BUILD_ID", id.to_string())
        .current_dir(root.join("ha-ebpf")))?;
    let built = target_dir.join("bpfel-unknown-none/release/ha-xdp");
    let default_out = root.join(format!("ha-ebpf/target/ha-xdp-build-{id}"));
    copy_object(&built, out.unwrap_or(&default_out))?;
    println!(
        "build-ebpf: build id {id} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn copy_object(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    println!("build-ebpf: {}", to.display());
    Ok(())
}
