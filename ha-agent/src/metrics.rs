//! Prometheus metrics: a plain-data [`Snapshot`] the agent fills, its
//! rendering in the text exposition format (version 0.0.4), and a tiny
//! HTTP/1.1 server for `GET /metrics` ([`serve`]).
//!
//! Why this shape: the agent's state lives in its main loop, so the server
//! owns none of it. For each scrape it sends a [`oneshot`] sender through
//! an [`mpsc`] channel; the main loop fills a [`Snapshot`], calls
//! [`render`] and answers with the text. Rendering is pure and tested line
//! by line; the server is small enough to read in one sitting and bounds
//! everything a client controls (head size, time, concurrent connections).
//!
//! ```ignore
//! let (scrapes, mut requests) = tokio::sync::mpsc::channel(4);
//! tokio::spawn(metrics::serve(TcpListener::bind(config.listen).await?, scrapes));
//! // in the main loop's select!:
//! Some(reply) = requests.recv() => { let _ = reply.send(metrics::render(&snapshot)); }
//! ```
//!
//! # Metrics
//!
//! Counters are sums over the per-CPU maps, so they only go down when the
//! datapath's maps are recreated (Prometheus treats that as a reset).
//! Families without a sample are left out entirely; the `ha_cluster_*`
//! and `ha_heartbeats_*` families only exist with a `[cluster]`.
//!
//! | name | type | labels | meaning |
//! |------|------|--------|---------|
//! | `ha_agent_info` | gauge | `node`, `version` | always 1 |
//! | `ha_vip_packets_total` | counter | `vip`, `address`, `port`, `protocol` | packets the datapath matched to the VIP |
//! | `ha_vip_bytes_total` | counter | same | their bytes |
//! | `ha_vip_owned` | gauge | `vip` | 1 while this node answers for the VIP (owns its group) |
//! | `ha_backend_packets_total` | counter | `vip`, `backend` | packets forwarded to the backend |
//! | `ha_backend_bytes_total` | counter | same | their bytes |
//! | `ha_backend_up` | gauge | same | 1 while its health check passes |
//! | `ha_backend_draining` | gauge | same | 1 while drained (weight 0 or `hactl drain`) |
//! | `ha_datapath_packets_total` | counter | `counter` | the datapath's global counters (`pass`, `tx`, `drop`, ...) |
//! | `ha_datapath_bytes_total` | counter | `counter` | their bytes |
//! | `ha_cluster_quorum` | gauge | | 1 while this node has quorum |
//! | `ha_cluster_peer_up` | gauge | `peer` | 1 while the peer's heartbeats arrive |
//! | `ha_cluster_peer_last_heard_seconds` | gauge | `peer` | time since its last valid heartbeat (absent: never heard) |
//! | `ha_cluster_peer_rtt_seconds` | gauge | `peer` | heartbeat round trip to the peer, smoothed (absent: not measured yet) |
//! | `ha_heartbeats_dropped_total` | counter | `reason` | heartbeat frames dropped, by reason (`unauthenticated`, `replayed`, ...) |
//! | `ha_switchover_phase1_seconds` | histogram | | backend switchover: decision to phase 1 done (backend entry written) |
//! | `ha_switchover_phase2_seconds` | histogram | | backend switchover: decision to phase 2 done (Maglev table flipped) |
//!
//! Label values are escaped as the format requires (`\\`, `\"`, `\n`);
//! the histograms use [`LATENCY_BUCKETS`] (1 µs to 1 s) unless the agent
//! builds them otherwise.
//!
//! # The server
//!
//! One request per connection (`Connection: close`). The request head is
//! read within [`HEAD_TIMEOUT`] and at most [`MAX_HEAD`] bytes; then
//! `GET` or `HEAD /metrics` (any query string) is 200 with
//! [`CONTENT_TYPE`], another path 404, another method on `/metrics` 405, a
//! malformed head 400, a head too slow 408, too large 431, an HTTP version
//! other than 1.0/1.1 505, and 503 when the agent does not answer within
//! [`RENDER_TIMEOUT`]. Headers are checked for shape only; `Host` is not
//! required.

use std::fmt::{self, Write as _};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::config::Protocol;

/// Histogram bucket upper bounds (seconds) for switchover latencies: 1 µs
/// to 1 s in 1-2.5-5 steps. Phase 1 takes microseconds, phase 2 (a Maglev
/// table rebuild) up to milliseconds; the upper buckets catch stalls.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
];

/// The Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Largest request head (request line and headers) the server reads.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the agent has to answer a scrape.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After responding, how long unread request bytes are drained before the
/// socket closes (closing with unread data would reset the connection and
/// could destroy the response in flight).
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes drained after responding.
const MAX_LINGER_BYTES: u64 = 64 * 1024;
/// Connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// What the agent reports at one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// This node's name (`[node] name`).
    pub node: String,
    pub vips: Vec<VipSample>,
    pub backends: Vec<BackendSample>,
    /// The datapath's global counters by name (`GlobalCounter::name`):
    /// (name, packets, bytes).
    pub globals: Vec<(&'static str, u64, u64)>,
    /// `None` without a `[cluster]`.
    pub cluster: Option<ClusterSample>,
    /// Backend switchovers: decision to phase 2 done, in seconds.
    pub decisions: Histogram,
    /// Backend switchovers: decision to phase 1 done, in seconds.
    pub phase1: Histogram,
}

/// One VIP.
#[derive(Clone, Debug, PartialEq)]
pub struct VipSample {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub packets: u64,
    pub bytes: u64,
    /// This node answers for it (owns its group).
    pub owned: bool,
}

/// One backend of one VIP.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendSample {
    /// The VIP's name.
    pub vip: String,
    pub address: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    /// Its health check passes.
    pub up: bool,
    /// Takes no new flows.
    pub draining: bool,
}

/// This node's view of the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterSample {
    pub quorum: bool,
    pub peers: Vec<PeerSample>,
    /// Heartbeats dropped, by reason (`DropReason::name`).
    pub dropped: Vec<(&'static str, u64)>,
}

/// One other node of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSample {
    pub node: String,
    pub up: bool,
    /// Time since its last valid heartbeat; `None`: never heard.
    pub last_heard_seconds: Option<f64>,
    /// Smoothed heartbeat round trip; `None`: not measured yet.
    pub rtt_seconds: Option<f64>,
}

/// A Prometheus histogram with fixed buckets: counts per bucket (rendered
/// cumulatively, as the format wants), the sum and the count of the
/// observations.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Upper bounds, finite and strictly increasing; `+Inf` is implicit.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); one more than `bounds`,
    /// the last for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (seconds).
    ///
    /// # Panics
    ///
    /// If a bound is not finite or the bounds are not strictly increasing
    /// (a programming error: they are constants).
    pub fn new(buckets: &[f64]) -> Self {
        assert!(
            buckets.iter().all(|b| b.is_finite()) && buckets.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must be finite and strictly increasing: {buckets:?}"
        );
        Histogram {
            bounds: buckets.to_vec(),
            counts: vec![0; buckets.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one observation. A negative value counts as 0; NaN is
    /// ignored (it would poison the sum).
    pub fn observe(&mut self, seconds: f64) {
        if seconds.is_nan() {
            return;
        }
        let seconds = seconds.max(0.0);
        // The first bucket whose bound is >= the value (`le` is inclusive).
        let bucket = self.bounds.partition_point(|&bound| bound < seconds);
        self.counts[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// Records a duration.
    pub fn observe_duration(&mut self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// The upper bounds, without the implicit `+Inf`.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Cumulative counts: for each bound, the observations `<=` it, then
    /// the `+Inf` bucket (= [`Histogram::count`]).
    pub fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .scan(0, |total, &n| {
                *total += n;
                Some(*total)
            })
            .collect()
    }

    /// Sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Default for Histogram {
    /// Empty, with [`LATENCY_BUCKETS`].
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

/// The snapshot in the text exposition format, version 0.0.4.
pub fn render(s: &Snapshot) -> String {
    let mut out = Out::default();
    out.family(
        "ha_agent_info",
        "gauge",
        "The ha agent: its node name and version; always 1.",
        [Sample::new(
            vec![
                ("node", s.node.clone()),
                ("version", env!("CARGO_PKG_VERSION").into()),
            ],
            1,
        )],
    );

    let vip_labels = |v: &VipSample| {
        vec![
            ("vip", v.name.clone()),
            ("address", v.address.to_string()),
            ("port", v.port.to_string()),
            ("protocol", v.protocol.to_string()),
        ]
    };
    out.family(
        "ha_vip_packets_total",
        "counter",
        "Packets the datapath matched to the VIP.",
        s.vips.iter().map(|v| Sample::new(vip_labels(v), v.packets)),
    );
    out.family(
        "ha_vip_bytes_total",
        "counter",
        "Bytes of the packets the datapath matched to the VIP.",
        s.vips.iter().map(|v| Sample::new(vip_labels(v), v.bytes)),
    );
    out.family(
        "ha_vip_owned",
        "gauge",
        "1 while this node answers for the VIP (owns its group), else 0.",
        s.vips
            .iter()
            .map(|v| Sample::new(vec![("vip", v.name.clone())], v.owned)),
    );

    let backend_labels =
        |b: &BackendSample| vec![("vip", b.vip.clone()), ("backend", b.address.to_string())];
    let backends = [
        (
            "ha_backend_packets_total",
            "counter",
            "Packets forwarded to the backend.",
            (|b: &BackendSample| Value::from(b.packets)) as fn(&BackendSample) -> Value,
        ),
        (
            "ha_backend_bytes_total",
            "counter",
            "Bytes of the packets forwarded to the backend.",
            |b| Value::from(b.bytes),
        ),
        (
            "ha_backend_up",
            "gauge",
            "1 while the backend's health check passes, else 0.",
            |b| Value::from(b.up),
        ),
        (
            "ha_backend_draining",
            "gauge",
            "1 while the backend is drained (takes no new flows), else 0.",
            |b| Value::from(b.draining),
        ),
    ];
    for (name, kind, help, value) in backends {
        out.family(
            name,
            kind,
            help,
            s.backends
                .iter()
                .map(|b| Sample::new(backend_labels(b), value(b))),
        );
    }

    out.family(
        "ha_datapath_packets_total",
        "counter",
        "Packets by datapath global counter (pass, tx, drop, ...).",
        s.globals
            .iter()
            .map(|&(name, packets, _)| Sample::new(vec![("counter", name.into())], packets)),
    );
    out.family(
        "ha_datapath_bytes_total",
        "counter",
        "Bytes by datapath global counter (pass, tx, drop, ...).",
        s.globals
            .iter()
            .map(|&(name, _, bytes)| Sample::new(vec![("counter", name.into())], bytes)),
    );

    if let Some(cluster) = &s.cluster {
        out.family(
            "ha_cluster_quorum",
            "gauge",
            "1 while this node has quorum, else 0.",
            [Sample::new(Vec::new(), cluster.quorum)],
        );
        let peer = |p: &PeerSample| vec![("peer", p.node.clone())];
        out.family(
            "ha_cluster_peer_up",
            "gauge",
            "1 while the peer's heartbeats arrive, else 0.",
            cluster.peers.iter().map(|p| Sample::new(peer(p), p.up)),
        );
        out.family(
            "ha_cluster_peer_last_heard_seconds",
            "gauge",
            "Seconds since the last valid heartbeat of the peer (absent: never heard).",
            cluster.peers.iter().filter_map(|p| {
                p.last_heard_seconds
                    .map(|seconds| Sample::new(peer(p), seconds))
            }),
        );
        out.family(
            "ha_cluster_peer_rtt_seconds",
            "gauge",
            "Heartbeat round trip to the peer in seconds, smoothed (absent: not measured yet).",
            cluster
                .peers
                .iter()
                .filter_map(|p| p.rtt_seconds.map(|rtt| Sample::new(peer(p), rtt))),
        );
        out.family(
            "ha_heartbeats_dropped_total",
            "counter",
            "Heartbeat frames dropped, by reason.",
            cluster
                .dropped
                .iter()
                .map(|&(reason, n)| Sample::new(vec![("reason", reason.into())], n)),
        );
    }

    out.histogram(
        "ha_switchover_phase1_seconds",
        "Backend switchovers: seconds from the decision to phase 1 done (backend entry written).",
        &s.phase1,
    );
    out.histogram(
        "ha_switchover_phase2_seconds",
        "Backend switchovers: seconds from the decision to phase 2 done (Maglev table flipped).",
        &s.decisions,
    );
    out.text
}

/// A sample value: integers stay exact, floats use the format's spelling
/// of infinities and NaN.
#[derive(Clone, Copy, Debug)]
enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(b.into())
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Value::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            // Rust never writes an exponent: `0.0000025`, `1`.
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// One sample line: labels (name, unescaped value) and the value.
struct Sample {
    labels: Vec<(&'static str, String)>,
    value: Value,
}

impl Sample {
    fn new(labels: Vec<(&'static str, String)>, value: impl Into<Value>) -> Self {
        Sample {
            labels,
            value: value.into(),
        }
    }
}

/// The text being rendered.
#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    /// HELP, TYPE and the samples of a family; nothing without samples.
    fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = Sample>,
    ) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        self.header(name, kind, help);
        for sample in samples {
            self.sample(name, &sample.labels, sample.value);
        }
    }

    /// A histogram family: cumulative `_bucket`s ending with `+Inf`, then
    /// `_sum` and `_count`.
    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let bounds = histogram.bounds.iter().map(|&b| Value::from(b));
        let bounds = bounds.chain([Value::from(f64::INFINITY)]);
        for (bound, count) in bounds.zip(histogram.cumulative()) {
            self.sample(&bucket, &[("le", bound.to_string())], count.into());
        }
        self.sample(&format!("{name}_sum"), &[], histogram.sum.into());
        self.sample(&format!("{name}_count"), &[], histogram.count.into());
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, String)], value: Value) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(text, true));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Escapes a HELP text (`\` and newline) or a label value (also `"`).
fn escape(text: &str, label: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The HTTP server.

/// The server's bounds (tests shorten the times).
#[derive(Clone, Copy, Debug)]
struct Limits {
    head_bytes: usize,
    head_timeout: Duration,
    render_timeout: Duration,
    write_timeout: Duration,
    linger: Duration,
    connections: usize,
}

const LIMITS: Limits = Limits {
    head_bytes: MAX_HEAD,
    head_timeout: HEAD_TIMEOUT,
    render_timeout: RENDER_TIMEOUT,
    write_timeout: WRITE_TIMEOUT,
    linger: LINGER,
    connections: MAX_CONNECTIONS,
};

/// Serves `GET /metrics` on `listener`, one request per connection, until
/// the receiver of `snapshots` is dropped. Each scrape sends a oneshot
/// sender through `snapshots`; the text sent back is the response body
/// (rendered by [`render`]). Accept errors are logged and retried; client
/// errors are answered and logged at debug level.
pub async fn serve(listener: TcpListener, snapshots: mpsc::Sender<oneshot::Sender<String>>) {
    serve_with(listener, snapshots, LIMITS).await
}

async fn serve_with(
    listener: TcpListener,
    snapshots: mpsc::Sender<oneshot::Sender<String>>,
    limits: Limits,
) {
    let permits = Arc::new(Semaphore::new(limits.connections));
    loop {
        let permit = tokio::select! {
            _ = snapshots.closed() => return,
            permit = permits.clone().acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
        };
        let accepted = tokio::select! {
            _ = snapshots.closed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let snapshots = snapshots.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, &snapshots, limits).await {
                        tracing::debug!(%peer, error = %e, "metrics: connection failed");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // E.g. out of file descriptors: do not spin.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request, answers it and closes the connection.
async fn connection(
    mut stream: TcpStream,
    snapshots: &mpsc::Sender<oneshot::Sender<String>>,
    limits: Limits,
) -> io::Result<()> {
    let head = tokio::time::timeout(
        limits.head_timeout,
        read_head(&mut stream, limits.head_bytes),
    )
    .await;
    let (response, head_only) = match head {
        Err(_) => (
            Response::error(408, "request head not received in time\n"),
            false,
        ),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::Incomplete)) => (Response::error(400, "incomplete request head\n"), false),
        Ok(Ok(Head::TooLarge)) => (
            Response::error(
                431,
                &format!("the request head exceeds {} bytes\n", limits.head_bytes),
            ),
            false,
        ),
        Ok(Ok(Head::Complete(head))) => match parse_head(&head) {
            Err(response) => (response, false),
            Ok(request) => (
                respond(request.route, snapshots, limits).await,
                request.head_only,
            ),
        },
    };
    let bytes = response.encode(head_only);
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(limits.write_timeout, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not taken in time"))??;
    // Lingering close: take what the client still sends (a body, the rest
    // of an oversized head) until it closes, so that our close does not
    // reset the connection under the response.
    let mut rest = (&mut stream).take(MAX_LINGER_BYTES);
    let _ = tokio::time::timeout(
        limits.linger,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
    Ok(())
}

/// How reading a request head ended.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head, up to and including the empty line.
    Complete(Vec<u8>),
    /// The client closed before sending a byte.
    Closed,
    /// The client closed in the middle of the head.
    Incomplete,
    /// No end of head within the limit.
    TooLarge,
}

/// Reads until the empty line that ends a request head (CRLF or bare LF
/// line ends), at most `max` bytes.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), max: usize) -> io::Result<Head> {
    let mut buf = vec![0; max];
    let mut len = 0;
    loop {
        if len == max {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(if len == 0 {
                Head::Closed
            } else {
                Head::Incomplete
            });
        }
        // The end may straddle two reads.
        let from = len.saturating_sub(2);
        len += n;
        if let Some(end) = head_end(&buf[..len], from) {
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
    }
}

/// The length of the head in `buf` (through the `\n` of its empty line),
/// looking for that `\n` from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from.max(1)..buf.len())
        .find(|&i| {
            buf[i] == b'\n'
                && (buf[i - 1] == b'\n' || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'))
        })
        .map(|i| i + 1)
}

/// What a well-formed request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    route: Route,
    /// HEAD: the response without its body.
    head_only: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
}

/// Parses a request head; a malformed one is answered with the error
/// response returned.
fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = |why: &str| Response::error(400, &format!("bad request: {why}\n"));
    let text = std::str::from_utf8(head).map_err(|_| bad("the head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    // Empty lines before the request line are allowed (RFC 9112 §2.2).
    let request_line = lines
        .by_ref()
        .find(|l| !l.is_empty())
        .ok_or_else(|| bad("no request line"))?;
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad("the request line is not `METHOD target HTTP/1.1`"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(bad("invalid method"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.len() == 8
            && v.starts_with("HTTP/")
            && v.as_bytes()[5].is_ascii_digit()
            && v.as_bytes()[6] == b'.'
            && v.as_bytes()[7].is_ascii_digit() =>
        {
            return Err(Response::error(
                505,
                "only HTTP/1.0 and HTTP/1.1 are served\n",
            ));
        }
        _ => return Err(bad("invalid HTTP version")),
    }
    // Origin form `/path?query`, or absolute form `http://host/path`.
    let path = if target.starts_with('/') {
        target
    } else if let Some((_, rest)) = target.split_once("://") {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else {
        return Err(bad("invalid request target"));
    };
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("invalid request target"));
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    for line in lines.take_while(|l| !l.is_empty()) {
        let name = line.split_once(':').map(|(name, _)| name);
        if !name.is_some_and(|n| !n.is_empty() && n.bytes().all(is_tchar)) {
            return Err(bad("invalid header line"));
        }
    }
    let head_only = method == "HEAD";
    let route = match (path, method) {
        ("/metrics", "GET" | "HEAD") => Route::Metrics,
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    };
    Ok(Request { route, head_only })
}

/// A token character (RFC 9110 §5.6.2): methods and header names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Answers a well-formed request.
async fn respond(
    route: Route,
    snapshots: &mpsc::Sender<oneshot::Sender<String>>,
    limits: Limits,
) -> Response {
    match route {
        Route::NotFound => Response::error(404, "not found: only /metrics is served\n"),
        Route::MethodNotAllowed => Response::error(405, "only GET and HEAD are allowed\n"),
        Route::Metrics => {
            let scrape = async {
                let (reply, text) = oneshot::channel();
                snapshots.send(reply).await.ok()?;
                text.await.ok()
            };
            match tokio::time::timeout(limits.render_timeout, scrape).await {
                Ok(Some(text)) => Response {
                    status: 200,
                    content_type: CONTENT_TYPE,
                    body: text,
                },
                _ => Response::error(503, "the agent did not answer\n"),
            }
        }
    }
}

/// A response, always with `Connection: close`.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn error(status: u16, body: &str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }

    /// Status line, headers and, unless `head_only`, the body.
    fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        };
        let allow = if self.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Instant;

    // -- rendering ----------------------------------------------------------

    /// One VIP whose name needs escaping, two backends, two globals, a
    /// two-peer cluster and small histograms.
    fn snapshot() -> Snapshot {
        let mut phase1 = Histogram::new(&[0.001, 0.01]);
        for seconds in [0.0005, 0.001, 0.002] {
            phase1.observe(seconds);
        }
        let mut decisions = Histogram::new(&[0.001, 0.01]);
        decisions.observe(0.5);
        Snapshot {
            node: "lb1".into(),
            vips: vec![VipSample {
                name: "we\"b\\1".into(),
                address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
                port: 80,
                protocol: Protocol::Tcp,
                packets: 10,
                bytes: 1500,
                owned: true,
            }],
            backends: vec![
                BackendSample {
                    vip: "web".into(),
                    address: "198.18.0.11".parse().unwrap(),
                    packets: 7,
                    bytes: 700,
                    up: true,
                    draining: false,
                },
                BackendSample {
                    vip: "web".into(),
                    address: "2001:db8::12".parse().unwrap(),
                    packets: u64::MAX,
                    bytes: 0,
                    up: false,
                    draining: true,
                },
            ],
            globals: vec![("pass", 3, 300), ("tx", 17, 2200)],
            cluster: Some(ClusterSample {
                quorum: true,
                peers: vec![
                    PeerSample {
                        node: "lb2".into(),
                        up: true,
                        last_heard_seconds: Some(0.025),
                        rtt_seconds: Some(0.000125),
                    },
                    PeerSample {
                        node: "lb3".into(),
                        up: false,
                        last_heard_seconds: None,
                        rtt_seconds: None,
                    },
                ],
                dropped: vec![("unauthenticated", 2), ("replayed", 0)],
            }),
            decisions,
            phase1,
        }
    }

    #[test]
    fn metrics_render_exact() {
        let version = env!("CARGO_PKG_VERSION");
        let want = format!(
            r#"# HELP ha_agent_info The ha agent: its node name and version; always 1.
# TYPE ha_agent_info gauge
ha_agent_info{{node="lb1",version="{version}"}} 1
# HELP ha_vip_packets_total Packets the datapath matched to the VIP.
# TYPE ha_vip_packets_total counter
ha_vip_packets_total{{vip="we\"b\\1",address="198.18.0.100",port="80",protocol="tcp"}} 10
# HELP ha_vip_bytes_total Bytes of the packets the datapath matched to the VIP.
# TYPE ha_vip_bytes_total counter
ha_vip_bytes_total{{vip="we\"b\\1",address="198.18.0.100",port="80",protocol="tcp"}} 1500
# HELP ha_vip_owned 1 while this node answers for the VIP (owns its group), else 0.
# TYPE ha_vip_owned gauge
ha_vip_owned{{vip="we\"b\\1"}} 1
# HELP ha_backend_packets_total Packets forwarded to the backend.
# TYPE ha_backend_packets_total counter
ha_backend_packets_total{{vip="web",backend="198.18.0.11"}} 7
ha_backend_packets_total{{vip="web",backend="2001:db8::12"}} 18446744073709551615
# HELP ha_backend_bytes_total Bytes of the packets forwarded to the backend.
# TYPE ha_backend_bytes_total counter
ha_backend_bytes_total{{vip="web",backend="198.18.0.11"}} 700
ha_backend_bytes_total{{vip="web",backend="2001:db8::12"}} 0
# HELP ha_backend_up 1 while the backend's health check passes, else 0.
# TYPE ha_backend_up gauge
ha_backend_up{{vip="web",backend="198.18.0.11"}} 1
ha_backend_up{{vip="web",backend="2001:db8::12"}} 0
# HELP ha_backend_draining 1 while the backend is drained (takes no new flows), else 0.
# TYPE ha_backend_draining gauge
ha_backend_draining{{vip="web",backend="198.18.0.11"}} 0
ha_backend_draining{{vip="web",backend="2001:db8::12"}} 1
# HELP ha_datapath_packets_total Packets by datapath global counter (pass, tx, drop, ...).
# TYPE ha_datapath_packets_total counter
ha_datapath_packets_total{{counter="pass"}} 3
ha_datapath_packets_total{{counter="tx"}} 17
# HELP ha_datapath_bytes_total Bytes by datapath global counter (pass, tx, drop, ...).
# TYPE ha_datapath_bytes_total counter
ha_datapath_bytes_total{{counter="pass"}} 300
ha_datapath_bytes_total{{counter="tx"}} 2200
# HELP ha_cluster_quorum 1 while this node has quorum, else 0.
# TYPE ha_cluster_quorum gauge
ha_cluster_quorum 1
# HELP ha_cluster_peer_up 1 while the peer's heartbeats arrive, else 0.
# TYPE ha_cluster_peer_up gauge
ha_cluster_peer_up{{peer="lb2"}} 1
ha_cluster_peer_up{{peer="lb3"}} 0
# HELP ha_cluster_peer_last_heard_seconds Seconds since the last valid heartbeat of the peer (absent: never heard).
# TYPE ha_cluster_peer_last_heard_seconds gauge
ha_cluster_peer_last_heard_seconds{{peer="lb2"}} 0.025
# HELP ha_cluster_peer_rtt_seconds Heartbeat round trip to the peer in seconds, smoothed (absent: not measured yet).
# TYPE ha_cluster_peer_rtt_seconds gauge
ha_cluster_peer_rtt_seconds{{peer="lb2"}} 0.000125
# HELP ha_heartbeats_dropped_total Heartbeat frames dropped, by reason.
# TYPE ha_heartbeats_dropped_total counter
ha_heartbeats_dropped_total{{reason="unauthenticated"}} 2
ha_heartbeats_dropped_total{{reason="replayed"}} 0
# HELP ha_switchover_phase1_seconds Backend switchovers: seconds from the decision to phase 1 done (backend entry written).
# TYPE ha_switchover_phase1_seconds histogram
ha_switchover_phase1_seconds_bucket{{le="0.001"}} 2
ha_switchover_phase1_seconds_bucket{{le="0.01"}} 3
ha_switchover_phase1_seconds_bucket{{le="+Inf"}} 3
ha_switchover_phase1_seconds_sum 0.0035
ha_switchover_phase1_seconds_count 3
# HELP ha_switchover_phase2_seconds Backend switchovers: seconds from the decision to phase 2 done (Maglev table flipped).
# TYPE ha_switchover_phase2_seconds histogram
ha_switchover_phase2_seconds_bucket{{le="0.001"}} 0
ha_switchover_phase2_seconds_bucket{{le="0.01"}} 0
ha_switchover_phase2_seconds_bucket{{le="+Inf"}} 1
ha_switchover_phase2_seconds_sum 0.5
ha_switchover_phase2_seconds_count 1
"#
        );
        let got = render(&snapshot());
        for (i, (got, want)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(got, want, "line {}", i + 1);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn metrics_label_escaping() {
        let mut s = snapshot();
        s.vips[0].name = "a\\b\"c\nd".into();
        s.node = "x\"".into();
        let text = render(&s);
        assert!(
            text.contains("ha_vip_owned{vip=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ha_agent_info{node=\"x\\\"\","), "{text}");
        // Every line stays one line.
        assert_eq!(text.lines().filter(|l| l.contains("ha_vip_")).count(), 9);
        assert_eq!(escape("a\\b\nc\"", false), "a\\\\b\\nc\"");
        assert_eq!(escape("a\\b\nc\"", true), "a\\\\b\\nc\\\"");
    }

    #[test]
    fn metrics_without_cluster_or_samples() {
        let s = Snapshot {
            node: "lb1".into(),
            ..Snapshot::default()
        };
        let text = render(&s);
        for absent in [
            "ha_cluster_",
            "ha_heartbeats_",
            "ha_vip_",
            "ha_backend_",
            "ha_datapath_",
        ] {
            assert!(!text.contains(absent), "{absent}: {text}");
        }
        // The histograms are always there, with the default buckets.
        assert!(text.contains("# TYPE ha_switchover_phase2_seconds histogram\n"));
        assert!(text.contains("ha_switchover_phase1_seconds_bucket{le=\"0.000001\"} 0\n"));
        assert!(text.contains("ha_switchover_phase1_seconds_bucket{le=\"0.0000025\"} 0\n"));
        assert!(text.contains("ha_switchover_phase1_seconds_bucket{le=\"1\"} 0\n"));
        assert!(text.contains("ha_switchover_phase1_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("ha_switchover_phase1_seconds_sum 0\n"));
        assert!(text.contains("ha_switchover_phase1_seconds_count 0\n"));
        assert_eq!(
            text.matches("ha_switchover_phase1_seconds_bucket").count(),
            LATENCY_BUCKETS.len() + 1
        );
        // A cluster with no peers and no reasons: only the quorum.
        let s = Snapshot {
            cluster: Some(ClusterSample::default()),
            ..s
        };
        let text = render(&s);
        assert!(text.contains("\nha_cluster_quorum 0\n"), "{text}");
        assert!(!text.contains("ha_cluster_peer"), "{text}");
        assert!(!text.contains("ha_heartbeats_dropped_total"), "{text}");
    }

    /// The structure the format requires: each family's HELP then TYPE
    /// once, before its samples, which follow without interruption; every
    /// sample `name{labels} value` with a name of its family.
    #[test]
    fn metrics_render_is_well_formed() {
        let mut s = snapshot();
        s.phase1 = Histogram::default();
        s.decisions = Histogram::default();
        for i in 0..30u32 {
            s.phase1.observe(f64::from(i) * 1e-5);
            s.decisions
                .observe_duration(Duration::from_micros(37 * u64::from(i)));
        }
        let text = render(&s);
        assert!(text.ends_with('\n'));
        let mut families: Vec<(String, String)> = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let help = line.strip_prefix("# HELP ").expect(line);
            let name = help.split(' ').next().unwrap().to_owned();
            let kind = lines
                .next()
                .unwrap()
                .strip_prefix(&format!("# TYPE {name} "));
            let kind = kind.expect("TYPE after HELP").to_owned();
            assert!(["counter", "gauge", "histogram"].contains(&kind.as_str()));
            assert!(!families.iter().any(|(n, _)| *n == name), "{name} twice");
            assert!(name.starts_with("ha_"));
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
            let mut samples = 0;
            while let Some(sample) = lines.next_if(|l| !l.starts_with('#')) {
                samples += 1;
                let (series, value) = sample.rsplit_once(' ').unwrap();
                assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "{sample}");
                let metric = series.split('{').next().unwrap();
                let ok = match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| metric == format!("{name}{suffix}")),
                    _ => metric == name,
                };
                assert!(ok, "{sample} in {name}");
                if let Some(labels) = series.strip_prefix(metric) {
                    assert!(
                        labels.is_empty() || (labels.starts_with('{') && labels.ends_with("\"}")),
                        "{sample}"
                    );
                }
            }
            assert!(samples > 0, "{name} without samples");
            families.push((name, kind));
        }
        assert_eq!(families.len(), 17);
    }

    #[test]
    fn metrics_histogram() {
        let mut h = Histogram::new(&[0.001, 0.01, 0.1]);
        assert_eq!(h.cumulative(), [0, 0, 0, 0]);
        for seconds in [0.0, 0.001, 0.0011, 0.01, 0.05, 0.2, 7.0, -1.0, f64::NAN] {
            h.observe(seconds);
        }
        // `le` is inclusive; negative counts as 0; NaN is ignored.
        assert_eq!(h.cumulative(), [3, 5, 6, 8]);
        assert_eq!(h.count(), 8);
        assert!((h.sum() - 7.2621).abs() < 1e-9, "{}", h.sum());
        assert_eq!(h.bounds(), [0.001, 0.01, 0.1]);
        h.observe_duration(Duration::from_micros(500));
        assert_eq!(h.cumulative(), [4, 6, 7, 9]);
        // No bounds: only +Inf.
        let mut h = Histogram::new(&[]);
        h.observe(1.0);
        assert_eq!(h.cumulative(), [1]);
        // The default buckets: 1 µs .. 1 s, increasing.
        assert_eq!(Histogram::default().bounds(), LATENCY_BUCKETS);
        assert_eq!(LATENCY_BUCKETS.first(), Some(&1e-6));
        assert_eq!(LATENCY_BUCKETS.last(), Some(&1.0));
        assert!(LATENCY_BUCKETS.contains(&0.1));
    }

    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn metrics_histogram_rejects_unsorted_bounds() {
        Histogram::new(&[0.1, 0.01]);
    }

    #[test]
    #[should_panic(expected = "finite")]
    fn metrics_histogram_rejects_infinite_bound() {
        Histogram::new(&[0.1, f64::INFINITY]);
    }

    #[test]
    fn metrics_values() {
        assert_eq!(Value::from(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value::from(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Value::from(f64::NAN).to_string(), "NaN");
        assert_eq!(Value::from(2.5e-6).to_string(), "0.0000025");
        assert_eq!(Value::from(1.0).to_string(), "1");
        assert_eq!(Value::from(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(Value::from(true).to_string(), "1");
        assert_eq!(Value::from(false).to_string(), "0");
    }

    // -- the request head ---------------------------------------------------

    #[test]
    fn metrics_head_end() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(head_end(b"\n", 0), None);
        assert_eq!(head_end(b"\n\n", 0), Some(2));
    }

    #[test]
    fn metrics_parse_head() {
        let route = |head: &str| parse_head(head.as_bytes()).map(|r| (r.route, r.head_only));
        let status = |head: &str| parse_head(head.as_bytes()).unwrap_err().status;
        assert_eq!(
            route("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
            Ok((Route::Metrics, false))
        );
        assert_eq!(
            route("HEAD /metrics HTTP/1.0\n\n"),
            Ok((Route::Metrics, true))
        );
        assert_eq!(
            route("GET /metrics?a=b HTTP/1.1\r\n\r\n"),
            Ok((Route::Metrics, false))
        );
        assert_eq!(
            route("\r\nGET /metrics HTTP/1.1\r\n\r\n"),
            Ok((Route::Metrics, false))
        );
        assert_eq!(
            route("GET http://lb1:9810/metrics HTTP/1.1\r\n\r\n"),
            Ok((Route::Metrics, false))
        );
        assert_eq!(
            route("GET / HTTP/1.1\r\n\r\n"),
            Ok((Route::NotFound, false))
        );
        assert_eq!(
            route("GET http://lb1 HTTP/1.1\r\n\r\n"),
            Ok((Route::NotFound, false))
        );
        assert_eq!(
            route("GET /metricsx HTTP/1.1\r\n\r\n"),
            Ok((Route::NotFound, false))
        );
        assert_eq!(
            route("POST /metrics HTTP/1.1\r\n\r\n"),
            Ok((Route::MethodNotAllowed, false))
        );
        for bad in [
            "hello\r\n\r\n",
            "\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 x\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTX/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "GET /met\x01rics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{bad:?}");
        }
        assert_eq!(
            parse_head(b"GET /\xff HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(status("GET /metrics HTTP/2.0\r\n\r\n"), 505);
    }

    // -- the server ---------------------------------------------------------

    /// Short limits, so that timeouts are quick to test.
    const TEST_LIMITS: Limits = Limits {
        head_bytes: MAX_HEAD,
        head_timeout: Duration::from_millis(300),
        render_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_secs(2),
        linger: Duration::from_millis(300),
        connections: 4,
    };

    /// A stand-in for the agent's main loop: answers every scrape with
    /// `text`, or drops the reply when `text` is None.
    fn agent(text: Option<&'static str>) -> mpsc::Sender<oneshot::Sender<String>> {
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<String>>(4);
        tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                if let Some(text) = text {
                    let _ = reply.send(text.to_owned());
                }
            }
        });
        tx
    }

    /// A server on an ephemeral loopback port.
    async fn start(
        snapshots: mpsc::Sender<oneshot::Sender<String>>,
        limits: Option<Limits>,
    ) -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        match limits {
            None => tokio::spawn(serve(listener, snapshots)),
            Some(limits) => tokio::spawn(serve_with(listener, snapshots, limits)),
        };
        address
    }

    /// Sends `request` and reads the whole response (the server closes).
    async fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8(response).unwrap()
    }

    fn status_line(response: &str) -> &str {
        response.split("\r\n").next().unwrap()
    }

    const TEXT: &str = "# HELP ha_x X.\n# TYPE ha_x gauge\nha_x 1\n";

    #[tokio::test]
    async fn metrics_server_get() {
        let address = start(agent(Some(TEXT)), None).await;
        let response = exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            response,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TEXT}",
                TEXT.len()
            )
        );
        // HEAD: the same head, no body.
        let response = exchange(address, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.ends_with(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                TEXT.len()
            )),
            "{response}"
        );
        // HTTP/1.0, bare LFs, a query string.
        let response = exchange(address, b"GET /metrics?x=1 HTTP/1.0\n\n").await;
        assert!(response.ends_with(TEXT), "{response}");
    }

    #[tokio::test]
    async fn metrics_server_errors() {
        let address = start(agent(Some(TEXT)), Some(TEST_LIMITS)).await;
        let response = exchange(address, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&response), "HTTP/1.1 404 Not Found");
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
        let response = exchange(
            address,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await;
        assert_eq!(status_line(&response), "HTTP/1.1 405 Method Not Allowed");
        assert!(response.contains("\r\nAllow: GET, HEAD\r\n"), "{response}");
        for garbage in [
            &b"hello there\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
        ] {
            let response = exchange(address, garbage).await;
            assert_eq!(status_line(&response), "HTTP/1.1 400 Bad Request");
        }
        // Closed in the middle of the head.
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert_eq!(status_line(&response), "HTTP/1.1 400 Bad Request");
        let response = exchange(address, b"GET /metrics HTTP/3.0\r\n\r\n").await;
        assert_eq!(
            status_line(&response),
            "HTTP/1.1 505 HTTP Version Not Supported"
        );
        // Still serving.
        let response = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.ends_with(TEXT), "{response}");
    }

    #[tokio::test]
    async fn metrics_server_oversized_head() {
        let address = start(agent(Some(TEXT)), Some(TEST_LIMITS)).await;
        // Exactly the limit is fine.
        let mut head = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        head.resize(MAX_HEAD - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        let response = exchange(address, &head).await;
        assert!(response.ends_with(TEXT), "{response}");
        // One byte more is not, nor is an endless header.
        head.insert(30, b'a');
        let response = exchange(address, &head).await;
        assert_eq!(
            status_line(&response),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        let mut head = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        head.resize(4 * MAX_HEAD, b'a');
        let response = exchange(address, &head).await;
        assert_eq!(
            status_line(&response),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[tokio::test]
    async fn metrics_server_slow_client_times_out() {
        let address = start(agent(Some(TEXT)), Some(TEST_LIMITS)).await;
        let start = Instant::now();
        // One client sends nothing, another only part of a head.
        let mut silent = TcpStream::connect(address).await.unwrap();
        let mut partial = TcpStream::connect(address).await.unwrap();
        partial.write_all(b"GET /metr").await.unwrap();
        // Meanwhile others are served.
        let response = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.ends_with(TEXT), "{response}");
        for stream in [&mut silent, &mut partial] {
            let mut response = String::new();
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
                .await
                .expect("the server gives up")
                .unwrap();
            assert_eq!(status_line(&response), "HTTP/1.1 408 Request Timeout");
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= TEST_LIMITS.head_timeout && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn metrics_server_agent_does_not_answer() {
        // The reply is dropped.
        let address = start(agent(None), Some(TEST_LIMITS)).await;
        let response = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&response), "HTTP/1.1 503 Service Unavailable");
        // The agent is stuck: the request is held but never answered.
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<String>>(4);
        let address = start(tx, Some(TEST_LIMITS)).await;
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(reply) = rx.recv().await {
                held.push(reply);
            }
        });
        let start = Instant::now();
        let response = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&response), "HTTP/1.1 503 Service Unavailable");
        assert!(start.elapsed() >= TEST_LIMITS.render_timeout);
        held.abort();
    }

    #[tokio::test]
    async fn metrics_server_stops_with_the_agent() {
        let (tx, rx) = mpsc::channel::<oneshot::Sender<String>>(4);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let server = tokio::spawn(serve(listener, tx));
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns once the receiver is gone")
            .unwrap();
    }
}
