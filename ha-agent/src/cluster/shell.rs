//! The thin shell around the cluster state machine: a UDP socket, the
//! heartbeat sealer and receiver, and the clock. It turns time and frames
//! into `Input`s, sends the `Send` actions itself and hands every other
//! action to the agent, which owns the maps and the hooks.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use tokio::{net::UdpSocket, sync::mpsc};

use crate::{
    backoff::Backoff,
    cluster::{
        shared::{self, Shared},
        state::{Action, Cluster, ClusterParams, Fencing, Input, Quorum},
        wire::{self, DropReason, Key, Receiver, Sender},
    },
    config::{ClusterConfig, Config, FencingConfig, QuorumConfig},
};

/// Largest datagram read; heartbeats are at most wire::MAX_FRAME_LEN.
const RECEIVE_BUFFER: usize = 2048;
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
    key: Key,
    peers: Vec<SocketAddr>,
    /// Frames from addresses that are no configured peer.
    not_a_peer: u64,
    sender: Sender,
    receiver: Receiver,
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
        let incarnation =
            remember_incarnation(&config.node.control_socket.with_extension("incarnation"));
        let epoch = Instant::now();
        let machine = Cluster::new(params(config, cluster), Duration::ZERO, incarnation)
            .map_err(|e| anyhow::anyhow!("cluster parameters: {e:?}"))?;
        let peers = cluster
            .nodes
            .iter()
            .filter(|n| n.name != config.node.name)
            .map(|n| SocketAddr::new(n.address, cluster.port))
            .collect();
        Ok(Shell {
            socket: Arc::new(socket),
            peers,
            not_a_peer: 0,
            sender: Sender::new(key.clone(), cluster.id, incarnation),
            receiver: Receiver::new(key.clone(), cluster.id, config.node.name.clone()),
            key,
            cluster_id: cluster.id,
            epoch,
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
            let mut buffer = [0u8; RECEIVE_BUFFER];
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

    /// An authentic, fresh heartbeat becomes an input, authentic shared
    /// state is handed over; anything else is dropped and counted by
    /// reason. A frame from an address that is no configured peer is
    /// dropped first, before it costs an HMAC.
    pub(crate) fn accept(&mut self, frame: &[u8], from: SocketAddr) -> Option<Received> {
        let source = from.ip().to_canonical();
        if !self.peers.iter().any(|p| p.ip().to_canonical() == source) {
            self.not_a_peer += 1;
            tracing::debug!(%from, reason = NOT_A_PEER, "frame dropped");
            return None;
        }
        let received = if shared::is_shared_frame(frame) {
            shared::open(frame, &self.key, self.cluster_id).map(Received::Shared)
        } else {
            let now = self.now();
            self.receiver
                .receive(frame)
                .map(|hb| Received::Heartbeat(Input::Heartbeat { now, hb }))
        };
        match received {
            Ok(received) => Some(received),
            Err(reason) => {
                if shared::is_shared_frame(frame) {
                    // The heartbeat receiver counted its own rejections.
                    self.receiver.rejected[reason.index()] += 1;
                }
                tracing::debug!(reason = reason.name(), "frame dropped");
                None
            }
        }
    }

    /// Sends shared state (`magic`, `content`) to every peer.
    pub(crate) async fn share<T: serde::Serialize>(&self, magic: [u8; 2], content: &T) {
        let frame = shared::seal(magic, content, &self.key, self.cluster_id);
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
}

/// The start time in milliseconds, but always above the last one: peers
/// drop frames of an incarnation lower than one they heard as replays, so
/// a clock that stepped back across a restart must not lower it.
pub(crate) fn next_incarnation(now_ms: u64, last: Option<u64>) -> u64 {
    last.map_or(now_ms, |last| now_ms.max(last + 1))
}

/// [`next_incarnation`] with the last one kept in `file` (beside the
/// control socket, so under /run: it outlives restarts, not reboots).
fn remember_incarnation(file: &Path) -> u64 {
    let last = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.trim().parse().ok());
    let incarnation = next_incarnation(wall_ms(), last);
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
