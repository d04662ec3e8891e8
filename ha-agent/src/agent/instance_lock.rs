//! One agent per node: a second agent for the same node name would fight
//! the first over the pinned maps, the control socket and the heartbeat
//! port. Each agent holds an exclusive flock on `<control socket>.lock`
//! (beside the socket, in the control directory) for its whole life; the
//! kernel releases it when the process ends, however it ends.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    path::Path,
};

use anyhow::{Context, Result, bail};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

/// Held while the agent runs.
pub(super) struct InstanceLock {
    _lock: Flock<File>,
}

/// Takes node `node`'s lock, or says which agent holds it.
pub(super) fn acquire(control_socket: &Path, node: &str) -> Result<InstanceLock> {
    let path = control_socket.with_extension("lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create control directory {}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("open lock file {}", path.display()))?;
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((file, Errno::EWOULDBLOCK)) => {
            let holder = std::io::read_to_string(&file).unwrap_or_default();
            bail!(
                "another ha-agent is running for node {node} (pid {}, holding {}): stop it first",
                holder.trim(),
                path.display()
            );
        }
        Err((_, e)) => {
            return Err(e).with_context(|| format!("lock {}", path.display()));
        }
    };
    // Who holds it, for the next one's message.
    let mut holder: &File = &lock;
    let _ = holder.set_len(0);
    let _ = writeln!(holder, "{}", std::process::id());
    Ok(InstanceLock { _lock: lock })
}

#[cfg(test)]
mod tests;
