//! The thin shell around the cluster state machine: a UDP socket, the
//! heartbeat sealer and receiver, and the clock. It turns time and frames
//! into `Input`s, sends the `Send` actions itself and hands every other
//! action to the agent, which owns the maps and the hooks.

use std::{
    ffi::OsStr,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use tokio::{net::UdpSocket, sync::mpsc};

use crate::{
    backoff::Backoff,
    cluster::{
        shared::{self, Kind, Shared, SharedReceiver, SharedSender},
        state::{Action, Cluster, ClusterParams, Fencing, Input, Quorum},
        wire::{self, DropReason, Key, Receiver, Sender},
    },
    config::{ClusterConfig, Config, FencingConfig, QuorumConfig},
};

/// Largest datagram read: any UDP payload (65,527 bytes over IPv6, 65,507
/// over IPv4), so no frame is ever cut short. Senders keep every frame
/// within one datagram (`wire::MAX_FRAME_LEN`, `shared::MAX_FRAME_LEN`).
const RECEIVE_BUFFER: usize = 64 * 1024;
const _: () =
    assert!(RECEIVE_BUFFER > wire::MAX_FRAME_LEN && RECEIVE_BUFFER > shared::MAX_FRAME_LEN);
/// The heartbeat reader's first and longest pause after a failed read.
const READ_RETRY: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// What an authentic frame carried.
pub(crate) enum Received {
    Heartbeat(Input),
    Shared(Shared),
}

/// Frames dropped for their source, before any authentication: not the
/// address of a configured peer.
const NOT_A_PEER: &str = "not_a_peer";

pub(crate) struct Shell {
    socket: Arc<UdpSocket>,
    peers: Vec<SocketAddr>,
    /// Frames from addresses that are no configured peer.
    not_a_peer: u64,
    sender: Sender,
    receiver: Receiver,
    shared_sender: SharedSender,
    shared_receiver: SharedReceiver,
    cluster_id: u64,
    epoch: Instant,
    pub machine: Cluster,
}

/// The state machine's parameters from the configuration.
pub(crate) fn params(config: &Config, cluster: &ClusterConfig) -> ClusterParams {
    let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut params = ClusterParams::new(
        &config.node.name,
        cluster.priority,
        &names,
        config.groups.len(),
    );
    params.interval = cluster.interval;
    params.dead_after = cluster.dead_after;
    params.preempt = cluster.preempt;
    params.preempt_delay = cluster.preempt_delay;
    params.quorum = match cluster.quorum {
        QuorumConfig::Majority => Quorum::Majority,
        QuorumConfig::TwoNode => Quorum::TwoNode {
            tie_breaker: cluster.tie_breaker.is_some(),
        },
    };
    params.fencing = match cluster.fencing {
        FencingConfig::None => Fencing::None,
        FencingConfig::Required => Fencing::Required,
    };
    params
}

impl Shell {
    /// Binds the heartbeat port (IPv4 and IPv6) and starts the machine
    /// with a new incarnation ([`next_incarnation`]).
    pub(crate) async fn open(config: &Config, cluster: &ClusterConfig) -> Result<Shell> {
        let key = wire::load_key(&cluster.key_file)?;
        let bind = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), cluster.port);
        let socket = UdpSocket::bind(bind)
            .await
            .with_context(|| format!("bind heartbeat port {bind}"))?;
        let state_directory = std::env::var_os("STATE_DIRECTORY");
        let files = incarnation_files(
            &config.node.name,
            &config.node.control_socket,
            state_directory.as_deref(),
        );
        let incarnation = remember_incarnation(&files);
        let peers = cluster
            .nodes
            .iter()
            .filter(|n| n.name != config.node.name)
            .map(|n| SocketAddr::new(n.address, cluster.port))
            .collect();
        Shell::new(
            socket,
            key,
            peers,
            cluster.id,
            params(config, cluster),
            incarnation,
        )
    }

    /// A shell on `socket` sending to `peers`, its machine starting now.
    fn new(
        socket: UdpSocket,
        key: Key,
        peers: Vec<SocketAddr>,
        cluster_id: u64,
        params: ClusterParams,
        incarnation: u64,
    ) -> Result<Shell> {
        let me = params.me.clone();
        let receiver = Receiver::new(
            key.clone(),
            cluster_id,
            me.clone(),
            incarnation,
            params.dead_after,
        );
        let shared_sender = SharedSender::new(key.clone(), cluster_id, &me, incarnation);
        let shared_receiver = SharedReceiver::new(key.clone(), cluster_id, &me, params.interval);
        let machine = Cluster::new(params, Duration::ZERO, incarnation)
            .map_err(|e| anyhow::anyhow!("cluster parameters: {e:?}"))?;
        Ok(Shell {
            socket: Arc::new(socket),
            peers,
            sender: Sender::new(key, cluster_id, incarnation),
            receiver,
            not_a_peer: 0,
            shared_sender,
            shared_receiver,
            cluster_id,
            epoch: Instant::now(),
            machine,
        })
    }

    /// The machine's clock.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// When the machine next needs a tick: its next heartbeat or the next
    /// deadline it watches (a peer going down, a quorum window closing),
    /// so no decision waits for a fixed timer.
    pub(crate) fn next_tick(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + self.machine.next_timeout())
    }

    /// Feeds `input`, sends the heartbeats it asks for, returns the rest.
    pub(crate) async fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut rest = Vec::new();
        for action in self.machine.handle(input) {
            match action {
                Action::Send(outgoing) => {
                    let frame = self.sender.seal(&outgoing.to_heartbeat(self.cluster_id, 0));
                    for peer in &self.peers {
                        if let Err(e) = self.socket.send_to(&frame, peer).await {
                            tracing::debug!(%peer, error = %e, "heartbeat not sent");
                        }
                    }
                }
                other => rest.push(other),
            }
        }
        rest
    }

    /// A task that reads datagrams (and their source) off the heartbeat
    /// socket and hands them over; it ends with the receiver. A failed read
    /// is logged and retried: a node that stopped hearing its peers would
    /// take over.
    pub(crate) fn spawn_reader(&self) -> mpsc::Receiver<(Vec<u8>, SocketAddr)> {
        let (tx, rx) = mpsc::channel(256);
        let socket = self.socket.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; RECEIVE_BUFFER];
            let mut backoff = Backoff::new(READ_RETRY.0, READ_RETRY.1);
            loop {
                match socket.recv_from(&mut buffer).await {
                    Ok((len, from)) => {
                        backoff.succeeded();
                        if tx.send((buffer[..len].to_vec(), from)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let pause = backoff.failed();
                        tracing::warn!(error = %e, failures = backoff.failures, "heartbeat socket read failed: retrying");
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        });
        rx
    }

    /// An authentic, fresh heartbeat becomes an input, authentic fresh
    /// shared state of a live sender is handed over; anything else is
    /// dropped and counted by kind and reason. A frame from an address
    /// that is no configured peer is dropped first, before it costs an HMAC.
    pub(crate) fn accept(&mut self, frame: &[u8], from: SocketAddr) -> Option<Received> {
        let source = from.ip().to_canonical();
        if !self.peers.iter().any(|p| p.ip().to_canonical() == source) {
            self.not_a_peer += 1;
            tracing::debug!(%from, reason = NOT_A_PEER, "frame dropped");
            return None;
        }
        let now = self.now();
        let received = if shared::is_shared_frame(frame) {
            let receiver = &self.receiver;
            self.shared_receiver
                .receive(frame, now, |node| receiver.live_incarnation(node))
                .map(Received::Shared)
        } else {
            self.receiver
                .receive(frame, now)
                .map(|hb| Received::Heartbeat(Input::Heartbeat { now, hb }))
        };
        received
            .inspect_err(|reason| tracing::debug!(reason = reason.name(), "frame dropped"))
            .ok()
    }

    /// Sends shared state (`magic`, `content`) to every peer; content too
    /// large for one datagram is not sent (logged).
    pub(crate) async fn share<T: serde::Serialize>(&mut self, magic: [u8; 2], content: &T) {
        let frame = match self.shared_sender.seal(magic, content) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(error = %e, "shared state not sent");
                return;
            }
        };
        for peer in &self.peers {
            if let Err(e) = self.socket.send_to(&frame, peer).await {
                tracing::debug!(%peer, error = %e, "shared state not sent");
            }
        }
    }

    /// Heartbeats dropped so far, by reason.
    pub(crate) fn rejected(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.receiver.rejected[r.index()]))
            .chain([(NOT_A_PEER, self.not_a_peer)])
            .collect()
    }

    /// Shared frames dropped so far, by kind and reason (their names, as
    /// status and metrics show them).
    pub(crate) fn shared_rejected(&self) -> Vec<(&'static str, &'static str, u64)> {
        Kind::ALL
            .iter()
            .flat_map(|&kind| {
                let counts = self.shared_receiver.rejected(kind);
                DropReason::ALL
                    .iter()
                    .map(move |&r| (kind.name(), r.name(), counts[r.index()]))
            })
            .collect()
    }
}

/// The start time in milliseconds, but always above the last one: peers
/// drop frames of an incarnation lower than one they heard as replays, so
/// a clock that stepped back across a restart must not lower it.
pub(crate) fn next_incarnation(now_ms: u64, last: Option<u64>) -> u64 {
    last.map_or(now_ms, |last| now_ms.max(last + 1))
}

/// Where node `node` keeps its last incarnation, the file written first:
/// `<node>.incarnation` in systemd's state directory (`StateDirectory=ha`
/// makes it /var/lib/ha and passes it as `$STATE_DIRECTORY`, the first of
/// a `:`-separated list), which survives stops, restarts and reboots; then
/// beside the control socket, the place without systemd (under /run/ha: it
/// outlives restarts, not reboots, and systemd deletes its
/// `RuntimeDirectory` on every stop) and before this version.
fn incarnation_files(
    node: &str,
    control_socket: &Path,
    state_directory: Option<&OsStr>,
) -> Vec<PathBuf> {
    let name = format!("{node}.incarnation");
    let state = state_directory
        .and_then(|dirs| dirs.as_bytes().split(|&b| b == b':').next())
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(&name));
    let beside_socket = control_socket.with_file_name(&name);
    state.into_iter().chain([beside_socket]).collect()
}

/// [`next_incarnation`] above the last one found in any of `files`,
/// written to the first.
fn remember_incarnation(files: &[PathBuf]) -> u64 {
    let last = files
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok()?.trim().parse().ok())
        .max();
    let incarnation = next_incarnation(wall_ms(), last);
    let Some(file) = files.first() else {
        return incarnation;
    };
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(file, format!("{incarnation}\n")));
    if let Err(e) = written {
        tracing::warn!(file = %file.display(), error = %e, "incarnation not remembered");
    }
    incarnation
}

/// Milliseconds since the UNIX epoch (incarnations, operator requests).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
