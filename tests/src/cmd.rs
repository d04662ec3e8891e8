//! Running the lab's external tools (`ip`, `sysctl`, `ethtool`, `ping`).
//!
//! One place that turns a failed or missing tool into an error naming the
//! command line and what it printed, so a broken lab says why instead of
//! leaving a test to time out.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Runs `cmd` to completion with no standard input and returns its standard
/// output; an error if it cannot be started or exits unsuccessfully.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let line = command_line(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{line}` (is the tool installed and in PATH?)"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let said = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        bail!("`{line}` failed ({}): {}", out.status, said.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
