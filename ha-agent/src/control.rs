//! The control socket: how `hactl` talks to a running agent.
//!
//! A Unix stream socket, root only, one JSON request line answered by one
//! JSON response line. Every message carries `version`, so an hactl and an
//! agent of different releases refuse each other clearly instead of
//! misreading. This module holds the protocol, the client and the server,
//! which hands each request to the agent's main loop. The server reads at
//! most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`] and serves
//! [`MAX_CONNECTIONS`] clients at once, so no client holds memory or a
//! task forever; a failed accept is logged and retried.

use std::{
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    sync::{Semaphore, mpsc},
};

use crate::backoff::Backoff;

/// Bumped on any incompatible change of `Request` or `Response`.
pub const PROTOCOL_VERSION: u32 = 1;
/// How long hactl waits for the agent's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request line the agent reads (requests are a few hundred bytes).
pub(crate) const MAX_REQUEST: u64 = 64 * 1024;
/// Time a client has to send its request line...
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// ...and to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// The accept loop's first and longest pause after a failed accept (out of
/// file descriptors, most likely).
const ACCEPT_RETRY: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// What hactl asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Members' view of backends: health, drain, weight.
    Status,
    /// No new flows to the backend; its open flows stay.
    Drain { vip: String, backend: IpAddr },
    /// Undo a drain.
    Undrain { vip: String, backend: IpAddr },
    /// Release every VIP and take none (`on`), or end that (maintenance).
    Standby { on: bool },
    /// The owner of a VIP group gives it up; `to` is preferred.
    Failover { group: String, to: Option<String> },
    /// Read the config file again and apply it, or change nothing.
    Reload,
}

/// What the agent answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Done { message: String },
    Error { message: String },
    Status(Status),
}

/// The agent's view of its VIPs and backends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub vips: Vec<VipStatus>,
    /// None without a `[cluster]`.
    pub cluster: Option<ClusterStatus>,
}

/// This node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub quorum: bool,
    /// VIP groups this node owns.
    pub owned: Vec<String>,
    pub peers: Vec<PeerStatus>,
    /// Heartbeats dropped, by reason (unauthenticated, replayed, ...).
    pub dropped: Vec<(String, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node: String,
    pub up: bool,
    pub last_heard_ms: Option<u64>,
    /// The longest time between two of its heartbeats heard since this
    /// agent started (a peer is declared dead after `dead_after`).
    #[serde(default)]
    pub longest_gap_ms: Option<u64>,
    /// Smoothed heartbeat round trip, once measured.
    pub rtt_us: Option<u64>,
    pub eligible: bool,
    pub priority: u8,
    /// Agrees with this node on configuration and operator state.
    pub digest_matches: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: String,
    /// The node answering for it (this one or a peer claiming its group),
    /// as far as this node knows.
    pub owner: Option<String>,
    /// Packets and bytes steered to its backends by this node.
    pub packets: u64,
    pub bytes: u64,
    pub backends: Vec<BackendStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub id: u32,
    pub address: IpAddr,
    /// Passing its health checks.
    pub up: bool,
    /// Drained by an operator (hactl drain) or by weight 0.
    pub draining: bool,
    /// MAC known from the neighbour table (or configured).
    pub resolved: bool,
    pub weight: u32,
    /// Packets and bytes this node steered to it.
    pub packets: u64,
    pub bytes: u64,
}

/// A message on the wire: the version beside the payload.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    #[serde(flatten)]
    body: T,
}

/// Encodes one message as a line.
pub fn encode<T: Serialize>(body: &T) -> String {
    let mut line = serde_json::to_string(&Envelope {
        version: PROTOCOL_VERSION,
        body,
    })
    .expect("control messages always serialise");
    line.push('\n');
    line
}

/// Decodes one line, refusing other protocol versions.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T> {
    let envelope: Envelope<serde_json::Value> =
        serde_json::from_str(line).context("malformed control message")?;
    if envelope.version != PROTOCOL_VERSION {
        bail!(
            "control protocol version {} not supported (this side speaks {PROTOCOL_VERSION})",
            envelope.version
        );
    }
    serde_json::from_value(envelope.body).context("unknown control message")
}

/// Sends `request` to the agent listening on `socket` and returns its answer.
pub fn call(socket: &Path, request: &Request) -> Result<Response> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "connect to the agent at {} (is it running?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.write_all(encode(request).as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("read the agent's answer")?;
    decode(&line)
}

/// A request on its way to the agent's main loop, with the way back.
pub type Call = (Request, tokio::sync::oneshot::Sender<Response>);

/// Listens on the control socket (mode 0600: root only) and hands each
/// request to the main loop, which owns all state.
pub fn serve(path: &Path, calls: mpsc::Sender<Call>) -> Result<Server> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create control socket directory {}", dir.display()))?;
    }
    // A socket left by a killed agent would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let task = tokio::spawn(async move {
        let connections = std::sync::Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut backoff = Backoff::new(ACCEPT_RETRY.0, ACCEPT_RETRY.1);
        loop {
            let Ok(permit) = connections.clone().acquire_owned().await else {
                return;
            };
            match listener.accept().await {
                Ok((stream, _)) => {
                    backoff.succeeded();
                    let calls = calls.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, calls).await {
                            tracing::debug!(error = %format!("{e:#}"), "control connection");
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    let pause = backoff.failed();
                    tracing::warn!(error = %e, failures = backoff.failures, "control socket accept failed: retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    });
    Ok(Server(task))
}

/// Aborts the control listener with the agent.
pub struct Server(tokio::task::JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one request line (bounded in size and time), has the main loop
/// answer it and writes the answer.
async fn answer(stream: tokio::net::UnixStream, calls: mpsc::Sender<Call>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut limited = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line))
        .await
        .context("no request line in time")??;
    if line.len() as u64 >= MAX_REQUEST && !line.ends_with('\n') {
        let message = format!("request longer than {MAX_REQUEST} bytes");
        let refusal = encode(&Response::Error {
            message: message.clone(),
        });
        let _ = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(refusal.as_bytes())).await;
        bail!(message);
    }
    let response = match decode::<Request>(&line) {
        Ok(request) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            calls.send((request, tx)).await?;
            rx.await?
        }
        Err(e) => Response::Error {
            message: format!("{e:#}"),
        },
    };
    tokio::time::timeout(WRITE_TIMEOUT, write.write_all(encode(&response).as_bytes()))
        .await
        .context("answer not taken in time")??;
    Ok(())
}

#[cfg(test)]
mod tests;
