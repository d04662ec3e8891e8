//! Notify hooks (`on_owner`, `on_standby`, `on_fault`, the fencing
//! command): external commands run one at a time, in event order, each with
//! a timeout, so a slow hook delays later hooks but never the cluster loop,
//! and two hooks for one VIP group never race.

use std::{process::Stdio, time::Duration};

use tokio::{process::Command, sync::mpsc, task::JoinHandle, time::timeout};

/// One command to run, with its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// How a hook ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
}

/// Runs `hook` to completion or its timeout (then kills it).
pub async fn run(hook: &Hook) -> Outcome {
    let Some((program, args)) = hook.command.split_first() else {
        return Outcome::Failed("empty command".into());
    };
    let child = Command::new(program)
        .args(args)
        .envs(hook.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("cannot start {program}: {e}")),
    };
    match timeout(hook.timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Outcome::Succeeded,
        Ok(Ok(status)) => Outcome::Failed(format!("{program}: {status}")),
        Ok(Err(e)) => Outcome::Failed(format!("{program}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Outcome::Failed(format!(
                "{program}: no exit within {:?}, killed",
                hook.timeout
            ))
        }
    }
}

/// A queue that runs hooks one at a time in the order they were queued.
pub struct HookQueue {
    tx: mpsc::UnboundedSender<Hook>,
    task: JoinHandle<()>,
}

impl HookQueue {
    pub fn start() -> HookQueue {
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

    pub fn push(&self, hook: Hook) {
        let _ = self.tx.send(hook);
    }
}

impl Drop for HookQueue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str, timeout_ms: u64) -> Hook {
        Hook {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![("HA_EVENT".into(), "owner".into())],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn exit_status_and_environment_decide() {
        assert_eq!(
            run(&hook("test \"$HA_EVENT\" = owner", 5000)).await,
            Outcome::Succeeded
        );
        assert!(
            matches!(run(&hook("exit 3", 5000)).await, Outcome::Failed(why) if why.contains("3"))
        );
        let missing = Hook {
            command: vec!["/nonexistent/hook".into()],
            env: vec![],
            timeout: Duration::from_secs(1),
        };
        assert!(
            matches!(run(&missing).await, Outcome::Failed(why) if why.contains("cannot start"))
        );
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed() {
        let started = std::time::Instant::now();
        let outcome = run(&hook("sleep 10", 100)).await;
        assert!(matches!(outcome, Outcome::Failed(why) if why.contains("killed")));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "did not wait for the sleep"
        );
    }

    #[tokio::test]
    async fn the_queue_runs_hooks_one_at_a_time_in_order() {
        let file = std::env::temp_dir().join(format!("ha-hooks-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let queue = HookQueue::start();
        let path = file.display().to_string();
        // The first hook is slow; if hooks overlapped, "2" would come first.
        queue.push(hook(&format!("sleep 0.2; echo 1 >> {path}"), 5000));
        queue.push(hook(&format!("echo 2 >> {path}"), 5000));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.lines().count() == 2 {
                assert_eq!(text, "1\n2\n");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hooks did not run: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_file(&file);
    }
}
