//! The one way the agent runs an external command: exec health checks,
//! notify hooks and the fence command all go through [`run`].
//!
//! Why one runner: a command given a timeout must really be gone when the
//! timeout says so, with everything it started. A fence script that timed
//! out but left `ipmitool` running may still power a peer off after the
//! cluster has given up on fencing it. So:
//! - the command leads its own process group, and a timeout (or the caller
//!   going away, e.g. a reload dropping the checks) sends SIGKILL to the
//!   whole group, not just to the command;
//! - after the kill, the runner waits only [`REAP_GRACE`] for the command
//!   to be reaped: a process stuck in the kernel (state D) dies only when it
//!   leaves it, and a hook queue or the fencing must not wait for that. It
//!   reports the fact, and tokio reaps the process once it exits.

use std::{
    ffi::OsStr,
    io,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::process::{Child, Command};

use crate::systemd::NOTIFY_ENV;

/// How long a killed command may take to be reaped before [`run`] gives up
/// waiting for it.
pub(crate) const REAP_GRACE: Duration = Duration::from_secs(1);

/// Why [`run`] has no exit status to give.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command line is empty.
    EmptyCommand,
    /// The program could not be started (missing, not executable, ...).
    Spawn { program: String, error: io::Error },
    /// Waiting for it failed.
    Wait(io::Error),
    /// It did not exit within the timeout; its process group got SIGKILL.
    /// `reaped`: it was gone within [`REAP_GRACE`] after the kill; if not,
    /// it is stuck in the kernel and tokio reaps it when it gets out.
    TimedOut { reaped: bool },
}

/// Runs `command` (program, then arguments; no shell) with `env` added to
/// the agent's environment less systemd's notify variables (a child never
/// speaks for the agent), no standard input and its output discarded,
/// and waits for its exit for at most `timeout`.
///
/// At the timeout, or when the returned future is dropped before the
/// command exited, its whole process group is killed (see the module doc).
pub(crate) async fn run<K, V>(
    command: &[String],
    env: impl IntoIterator<Item = (K, V)>,
    timeout: Duration,
) -> Result<ExitStatus, Failure>
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let (program, args) = command.split_first().ok_or(Failure::EmptyCommand)?;
    let mut child = Command::new(program);
    for key in NOTIFY_ENV {
        child.env_remove(key);
    }
    let child = child
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: pgid = its pid.
        .process_group(0)
        // Dropped before it was reaped (the group is killed then too),
        // tokio kills it and reaps it in the background.
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Failure::Spawn {
            program: program.clone(),
            error,
        })?;
    let mut group = Group::new(child);
    match tokio::time::timeout(timeout, group.wait()).await {
        Ok(status) => status.map_err(Failure::Wait),
        Err(_) => Err(Failure::TimedOut {
            reaped: group.kill().await,
        }),
    }
}

/// A child that leads its own process group. Until the child is reaped,
/// its pid names the group (a pid is not reused before its process is
/// reaped), so the group can be killed safely; dropping it unreaped does so.
struct Group {
    child: Child,
    /// `None` once the leader is reaped (or if it had no pid to begin with).
    pgid: Option<Pid>,
}

impl Group {
    fn new(child: Child) -> Group {
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        Group { child, pgid }
    }

    /// Waits for the leader's exit and reaps it. Cancel-safe: dropped
    /// before it completes, it has reaped nothing.
    async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.pgid = None;
        Ok(status)
    }

    /// SIGKILL to the whole group, then waits at most [`REAP_GRACE`] for
    /// the leader; whether it was reaped.
    async fn kill(&mut self) -> bool {
        self.kill_group();
        match tokio::time::timeout(REAP_GRACE, self.wait()).await {
            Ok(_) => true,
            Err(_) => {
                tracing::warn!(
                    pid = self.child.id(),
                    "killed command not gone {REAP_GRACE:?} after SIGKILL (stuck in the kernel?): \
                     left to be reaped in the background"
                );
                false
            }
        }
    }

    fn kill_group(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH: the whole group is gone already.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_group();
    }
}

#[cfg(test)]
pub(crate) mod tests;
