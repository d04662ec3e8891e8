//! The text exposition format (version 0.0.4): a [`Snapshot`] rendered as
//! Prometheus reads it. Pure: no I/O, tested line by line.

use std::fmt::{self, Write as _};

use super::{
    Histogram,
    snapshot::{BackendSample, PeerSample, Snapshot, VipSample},
};

#[cfg(test)]
mod tests;

/// The Content-Type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The snapshot in the text exposition format, version 0.0.4.
pub(crate) fn render(s: &Snapshot) -> String {
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
            "ha_cluster_peer_longest_gap_seconds",
            "gauge",
            "Longest time in seconds between two heartbeats of the peer since this agent started (absent: fewer than two heard).",
            cluster.peers.iter().filter_map(|p| {
                p.longest_gap_seconds
                    .map(|seconds| Sample::new(peer(p), seconds))
            }),
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
        out.family(
            "ha_shared_frames_dropped_total",
            "counter",
            "Shared frames (operator state, health views) dropped, by kind and reason.",
            cluster.shared_dropped.iter().map(|&(frame, reason, n)| {
                Sample::new(vec![("frame", frame.into()), ("reason", reason.into())], n)
            }),
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
        let bounds = histogram.bounds().iter().map(|&b| Value::from(b));
        let bounds = bounds.chain([Value::from(f64::INFINITY)]);
        for (bound, count) in bounds.zip(histogram.cumulative()) {
            self.sample(&bucket, &[("le", bound.to_string())], count.into());
        }
        self.sample(&format!("{name}_sum"), &[], histogram.sum().into());
        self.sample(&format!("{name}_count"), &[], histogram.count().into());
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = write!(self.text, "# HELP {name} ");
        push_escaped(&mut self.text, help, false);
        let _ = writeln!(self.text, "\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, String)], value: Value) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                push_escaped(&mut self.text, text, true);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Appends a HELP text escaped (`\` and newline) or a label value (also
/// `"`). In place: at thousands of series, a `String` per label value
/// cost about 30% of the render time (see the module doc).
fn push_escaped(out: &mut String, text: &str, label: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (label && b == b'"');
    if !text.bytes().any(special) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}
