//! Notify hooks (`on_owner`, `on_standby`, `on_fault`, the fencing
//! command): external commands run one at a time, in event order, each with
//! a timeout, so a slow hook delays later hooks but never the cluster loop,
//! and two hooks for one VIP group never race. They run through the one
//! process runner ([`crate::process`]): at the timeout a hook's whole
//! process group is killed.

use std::time::Duration;

use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    config::Config,
    process::{self, Failure},
};

/// One command to run, with its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hook {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// How a hook ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed(String),
}

/// Runs `hook` to completion or its timeout (then kills its process
/// group).
pub(crate) async fn run(hook: &Hook) -> Outcome {
    let env = hook.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let program = hook.command.first().map_or("", String::as_str);
    match process::run(&hook.command, env, hook.timeout).await {
        Ok(status) if status.success() => Outcome::Succeeded,
        Ok(status) => Outcome::Failed(format!("{program}: {status}")),
        Err(Failure::EmptyCommand) => Outcome::Failed("empty command".into()),
        Err(Failure::Spawn { error, .. }) => {
            Outcome::Failed(format!("cannot start {program}: {error}"))
        }
        Err(Failure::Wait(e)) => Outcome::Failed(format!("{program}: {e}")),
        Err(Failure::TimedOut { reaped }) => Outcome::Failed(format!(
            "{program}: no exit within {:?}, killed{}",
            hook.timeout,
            if reaped {
                ""
            } else {
                " (not yet reaped: stuck in the kernel?)"
            }
        )),
    }
}

/// The fencing of peer `node` as `config` sets it up: its command, with
/// `HA_EVENT=fence`, this node and the one to fence in the environment,
/// and its timeout. `None` without a cluster or a fence command.
pub(crate) fn fence_hook(config: &Config, node: &str) -> Option<Hook> {
    let cluster = config.cluster.as_ref()?;
    Some(Hook {
        command: cluster.fence_command.clone()?,
        env: vec![
            ("HA_EVENT".into(), "fence".into()),
            ("HA_NODE".into(), config.node.name.clone()),
            ("HA_FENCE_NODE".into(), node.to_owned()),
        ],
        timeout: cluster.fence_timeout,
    })
}

/// A queue that runs hooks one at a time in the order they were queued.
pub(crate) struct HookQueue {
    tx: mpsc::UnboundedSender<Hook>,
    task: JoinHandle<()>,
}

impl HookQueue {
    pub(crate) fn start() -> HookQueue {
        let (tx, mut rx) = mpsc::unbounded_channel::<Hook>();
        let task = tokio::spawn(async move {
            while let Some(hook) = rx.recv().await {
                match run(&hook).await {
                    Outcome::Succeeded => tracing::info!(command = ?hook.command, "hook done"),
                    Outcome::Failed(why) => {
                        tracing::warn!(command = ?hook.command, %why, "hook failed")
                    }
                }
            }
        });
        HookQueue { tx, task }
    }

    pub(crate) fn push(&self, hook: Hook) {
        let _ = self.tx.send(hook);
    }
}

impl Drop for HookQueue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
