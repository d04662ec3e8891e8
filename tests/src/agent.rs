//! The real `ha-agent` and `hactl` binaries, run inside lab hosts.
//!
//! The agent is a child process in the host's network namespace (and the
//! caller's mount namespace, so its pins are visible to `hactl` here). It
//! is stopped with SIGTERM on drop, killed if it does not go, so a failing
//! test never leaves an agent or an attached program behind.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::Netns;

/// How long an agent gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Where the lab's agents pin their datapath: bpffs, one folder per node.
pub const PIN_ROOT: &str = "/sys/fs/bpf/ha";

/// Path of a binary of this workspace, next to the test executable's
/// directory (target/<profile>/).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the test executable")?;
    let profile_dir = exe
        .ancestors()
        .find(|d| d.join(name).is_file())
        .with_context(|| {
            format!("binary {name} not found next to {}: run `cargo build --bins` (cargo xtask test does)", exe.display())
        })?;
    Ok(profile_dir.join(name))
}

/// A running ha-agent.
pub struct Agent {
    child: Option<Child>,
    /// Started with --keep-datapath: its pins outlive it on purpose.
    keep_datapath: bool,
    pub node: String,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Where this agent's lines start in a log shared with earlier agents.
    log_start: usize,
}

/// What an agent starts with beyond its config.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Added to its command line (e.g. `--xdp-object PATH`).
    pub args: Vec<OsString>,
    /// Added to its environment (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, OsString)>,
}

impl Agent {
    /// Writes `config` to a file and starts the agent on it in `ns`; with
    /// `keep_datapath`, its exit leaves the datapath running.
    pub fn start(ns: &Netns, node: &str, config: &str, keep_datapath: bool) -> Result<Agent> {
        Agent::start_with(ns, node, config, keep_datapath, &Launch::default())
    }

    /// Like `start`, with `launch`'s arguments and environment.
    pub fn start_with(
        ns: &Netns,
        node: &str,
        config: &str,
        keep_datapath: bool,
        launch: &Launch,
    ) -> Result<Agent> {
        let dir = std::env::temp_dir().join(format!("ha-lab-{}", ns.name()));
        fs::create_dir_all(&dir)?;
        let config_path = dir.join("ha.toml");
        let log = dir.join("agent.log");
        fs::write(&config_path, config)?;
        let mut command = ns.command(binary("ha-agent")?);
        command.arg("--config").arg(&config_path);
        if keep_datapath {
            command.arg("--keep-datapath");
        }
        command.args(&launch.args).envs(launch.env.iter().cloned());
        let log_file = fs::File::options().create(true).append(true).open(&log)?;
        let log_start = log_file.metadata()?.len() as usize;
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("start ha-agent")?;
        Ok(Agent {
            child: Some(child),
            keep_datapath,
            node: node.to_string(),
            config: config_path,
            log,
            log_start,
        })
    }

    /// The agent's default control socket.
    pub fn control_socket(&self) -> PathBuf {
        Agent::socket_of(&self.node)
    }

    /// The default control socket of node `node`.
    pub fn socket_of(node: &str) -> PathBuf {
        Path::new("/run/ha").join(format!("{node}.sock"))
    }

    /// Where an agent in a cluster keeps its last incarnation.
    pub fn incarnation_file(node: &str) -> PathBuf {
        Path::new("/run/ha").join(format!("{node}.incarnation"))
    }

    pub fn pin_dir(&self) -> PathBuf {
        Path::new(PIN_ROOT).join(&self.node)
    }

    /// What this agent logged so far.
    pub fn log(&self) -> String {
        let all = fs::read_to_string(&self.log).unwrap_or_default();
        all.get(self.log_start..).unwrap_or_default().to_string()
    }

    /// `hactl maps --json` against this agent's pins.
    pub fn maps(&self) -> Result<Value> {
        hactl_json(&[
            "maps",
            "--flows",
            "5",
            "--pin-dir",
            &self.pin_dir().to_string_lossy(),
        ])
    }

    /// Waits until the agent has attached its program and the maps show
    /// `backends` healthy backends, or fails with the agent's log.
    pub fn wait_healthy(&mut self, backends: usize, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("ha-agent exited early ({status}):\n{}", self.log());
            }
            let attached = self.log().contains("datapath attached");
            if let Some(maps) = self.maps().ok().filter(|_| attached) {
                let healthy = maps["backends"].as_array().map_or(0, |b| {
                    b.iter()
                        .filter(|b| b["flags"].to_string().contains("healthy"))
                        .count()
                });
                if healthy >= backends {
                    return Ok(maps);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "ha-agent not ready with {backends} healthy backends after {timeout:?}:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `hactl status --json` through this agent's control socket.
    pub fn status(&self) -> Result<Value> {
        hactl_json(&[
            "status",
            "--socket",
            &self.control_socket().to_string_lossy(),
        ])
    }

    /// Whether the agent reports owning VIP group `group`; panics when it
    /// does not answer.
    pub fn owns(&self, group: &str) -> bool {
        let status = self.status().expect("hactl status");
        status["cluster"]["owned"]
            .as_array()
            .is_some_and(|o| o.iter().any(|g| g == group))
    }

    /// Sends a signal to the running agent (e.g. SIGHUP: reload).
    pub fn signal(&self, signal: i32) -> Result<()> {
        let child = self.child.as_ref().context("agent not running")?;
        // SAFETY: kill(2) on our own, not yet reaped, child's pid.
        if unsafe { libc::kill(child.id() as i32, signal) } != 0 {
            bail!("kill({signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGKILL, as a crash: no LEAVING, pins left behind.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("agent already stopped")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait; the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("agent already stopped")?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("ha-agent ignored SIGTERM for {STOP_GRACE:?}, killed ({status})");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        // A killed agent leaves its pins (by design); the lab does not,
        // unless a test hands them to the next agent on purpose.
        if !self.keep_datapath {
            let _ = ha_agent::datapath::unpin_dir(&self.pin_dir());
        }
    }
}

/// A global counter's packets from `hactl maps --json` output.
pub fn counter(maps: &Value, name: &str) -> u64 {
    maps["counters"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .and_then(|c| c["packets"].as_u64())
        .unwrap_or_else(|| panic!("counter {name} missing in {maps}"))
}

/// Runs hactl with `args` and parses its JSON output.
pub fn hactl_json(args: &[&str]) -> Result<Value> {
    let out = hactl(args, true)?;
    serde_json::from_str(&out).with_context(|| format!("hactl printed no JSON: {out}"))
}

/// Runs hactl with `args` (plus --json if asked); its stdout, or an error
/// with its stderr.
pub fn hactl(args: &[&str], json: bool) -> Result<String> {
    let mut cmd = Command::new(binary("hactl")?);
    cmd.args(args);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.stdin(Stdio::null()).output().context("run hactl")?;
    if !out.status.success() {
        bail!(
            "hactl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
