//! The exec check: a command, told the backend in its environment, exits
//! with status 0 within the timeout.

use std::{os::unix::process::ExitStatusExt, process::ExitStatus, time::Duration};

use super::{Target, describe, timed_out};
use crate::process::{self, Failure};

/// Runs the command with the backend in its environment; at the timeout
/// its whole process group is killed (the one process runner).
pub(super) async fn check(
    command: &[String],
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    let env = [
        ("HA_BACKEND_ADDRESS", target.address.to_string()),
        ("HA_BACKEND_PORT", target.port.to_string()),
        ("HA_VIP_ADDRESS", target.vip.to_string()),
        ("HA_VIP_PORT", target.vip_port.to_string()),
    ];
    match process::run(command, env, timeout).await {
        Ok(status) => exit_result(status),
        Err(Failure::EmptyCommand) => Err("empty command".to_owned()),
        Err(Failure::Spawn { program, error }) => {
            Err(format!("spawn {program}: {}", describe(&error)))
        }
        Err(Failure::Wait(e)) => Err(format!("wait: {}", describe(&e))),
        Err(Failure::TimedOut { reaped: true }) => Err(timed_out(timeout)),
        Err(Failure::TimedOut { reaped: false }) => Err(format!(
            "{}, still not reaped {:?} after SIGKILL",
            timed_out(timeout),
            process::REAP_GRACE
        )),
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
