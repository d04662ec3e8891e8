//! Where the pins live: the BPF file system at /sys/fs/bpf. Pins outlive
//! the agent only for whoever sees the same bpffs: the next agent, `hactl
//! maps`, `hactl unpin`. An agent started under `ip netns exec` runs in a
//! mount namespace of its own, with /sys remounted and no bpffs, so it
//! mounts a private one that vanishes with it, and the datapath with it:
//! that must be said, not found out when traffic stops.

use std::{fs, os::unix::fs::MetadataExt};

use anyhow::{Context, Result};
use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

/// Where bpffs is mounted on every systemd machine.
pub(crate) const BPFFS: &str = "/sys/fs/bpf";
/// The same place as PID 1 (the host's init) sees it.
const HOST_BPFFS: &str = "/proc/1/root/sys/fs/bpf";

/// Whether the pins outlive this agent for the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// The bpffs was there before us, or we mounted the host's.
    Host,
    /// We mounted a bpffs only our mount namespace sees: why.
    Private(String),
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there (systemd does
/// this at boot; minimal containers and VMs may not) and says whether the
/// pins made there are seen by the next agent.
pub(crate) fn prepare() -> Result<Sharing> {
    if statfs(BPFFS).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC) {
        return Ok(Sharing::Host);
    }
    tracing::info!("mounting bpffs at {BPFFS}");
    mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mount bpffs at {BPFFS}"))?;
    Ok(sharing_of_our_mount())
}

/// A bpffs we mounted is the host's if PID 1 sees the same file system
/// there (a machine without one at boot); otherwise we run in a mount
/// namespace of our own (`ip netns exec`, `unshare -m`) and it is ours alone.
fn sharing_of_our_mount() -> Sharing {
    let same_device =
        fs::metadata(BPFFS).and_then(|ours| Ok(ours.dev() == fs::metadata(HOST_BPFFS)?.dev()));
    let same_namespace = || -> std::io::Result<bool> {
        Ok(fs::read_link("/proc/self/ns/mnt")? == fs::read_link("/proc/1/ns/mnt")?)
    };
    match same_device {
        Ok(true) => Sharing::Host,
        Ok(false) => Sharing::Private(format!(
            "this agent mounted a bpffs at {BPFFS} that PID 1 does not see: it runs in a mount \
             namespace of its own (`ip netns exec` makes one)"
        )),
        // PID 1's view is closed to us: fall back on the namespaces.
        Err(_) => match same_namespace() {
            Ok(true) => Sharing::Host,
            _ => Sharing::Private(format!(
                "this agent had to mount a bpffs at {BPFFS}, in a mount namespace that is not \
                 (or may not be) PID 1's (`ip netns exec` makes one)"
            )),
        },
    }
}
