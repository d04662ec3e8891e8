//! The exec check: a command, told the backend in its environment, exits
//! with status 0 within the timeout.

use std::{
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::process::Command;

use super::{Target, describe, timed_out};

pub(super) async fn check(
    command: &[String],
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err("empty command".to_owned());
    };
    let mut child = Command::new(program)
        .args(args)
        .env("HA_BACKEND_ADDRESS", target.address.to_string())
        .env("HA_BACKEND_PORT", target.port.to_string())
        .env("HA_VIP_ADDRESS", target.vip.to_string())
        .env("HA_VIP_PORT", target.vip_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so a timeout kills what it started too;
        // and killed if this task is aborted.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn {program}: {}", describe(&e)))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => exit_result(status),
        Ok(Err(e)) => Err(format!("wait: {}", describe(&e))),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                // SAFETY: kill(2) has no memory effects. The child is not
                // reaped yet, so its pid still names its process group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            // Kills the child itself too and reaps it.
            let _ = child.kill().await;
            Err(timed_out(timeout))
        }
    }
}

fn exit_result(status: ExitStatus) -> Result<(), String> {
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(format!("exit status {code}")),
        (None, Some(signal)) => Err(format!("killed by signal {signal}")),
        (None, None) => Err(format!("{status}")),
    }
}
