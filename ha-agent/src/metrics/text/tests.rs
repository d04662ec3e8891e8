use super::*;
use crate::metrics::ClusterSample;
use crate::metrics::histogram::LATENCY_BUCKETS;
use crate::model::Protocol;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

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
                    longest_gap_seconds: Some(0.075),
                },
                PeerSample {
                    node: "lb3".into(),
                    up: false,
                    last_heard_seconds: None,
                    rtt_seconds: None,
                    longest_gap_seconds: None,
                },
            ],
            dropped: vec![("unauthenticated", 2), ("replayed", 0)],
            shared_dropped: vec![("health_view", "replayed", 2000)],
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
# HELP ha_cluster_peer_longest_gap_seconds Longest time in seconds between two heartbeats of the peer since this agent started (absent: fewer than two heard).
# TYPE ha_cluster_peer_longest_gap_seconds gauge
ha_cluster_peer_longest_gap_seconds{{peer="lb2"}} 0.075
# HELP ha_heartbeats_dropped_total Heartbeat frames dropped, by reason.
# TYPE ha_heartbeats_dropped_total counter
ha_heartbeats_dropped_total{{reason="unauthenticated"}} 2
ha_heartbeats_dropped_total{{reason="replayed"}} 0
# HELP ha_shared_frames_dropped_total Shared frames (operator state, health views) dropped, by kind and reason.
# TYPE ha_shared_frames_dropped_total counter
ha_shared_frames_dropped_total{{frame="health_view",reason="replayed"}} 2000
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
    let escape = |text: &str, label: bool| {
        let mut out = "x".to_owned();
        push_escaped(&mut out, text, label);
        out.split_off(1)
    };
    assert_eq!(escape("a\\b\nc\"", false), "a\\\\b\\nc\"");
    assert_eq!(escape("a\\b\nc\"", true), "a\\\\b\\nc\\\"");
    assert_eq!(escape("plain", true), "plain");
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
    assert_eq!(families.len(), 19);
}

/// A real parser reads what we render: every line is a HELP, TYPE or
/// sample line to `prometheus-parse`, and the values it reads are the
/// snapshot's. (`promtool check metrics`, Go's parser and linter, accepted
/// the same output when the encoder was written; see the module doc.)
#[test]
fn metrics_render_parses() {
    use prometheus_parse::{HistogramCount, LineInfo, Scrape, Value as Parsed};
    let text = render(&snapshot());
    for line in text.lines() {
        assert_ne!(LineInfo::parse(line), LineInfo::Ignored, "{line}");
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(scrape.docs.len(), 19);
    let find = |metric: &str, label: (&str, &str)| {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1));
        sample
            .unwrap_or_else(|| panic!("{metric} {label:?}"))
            .value
            .clone()
    };
    assert_eq!(
        find("ha_vip_packets_total", ("address", "198.18.0.100")),
        Parsed::Counter(10.0)
    );
    assert_eq!(
        find("ha_backend_packets_total", ("backend", "2001:db8::12")),
        Parsed::Counter(u64::MAX as f64)
    );
    assert_eq!(
        find("ha_backend_up", ("backend", "2001:db8::12")),
        Parsed::Gauge(0.0)
    );
    assert_eq!(
        find("ha_cluster_peer_rtt_seconds", ("peer", "lb2")),
        Parsed::Gauge(0.000125)
    );
    assert_eq!(
        find("ha_heartbeats_dropped_total", ("reason", "unauthenticated")),
        Parsed::Counter(2.0)
    );
    let phase1 = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ha_switchover_phase1_seconds")
        .expect("the phase 1 histogram");
    let buckets = [(0.001, 2.0), (0.01, 3.0), (f64::INFINITY, 3.0)];
    assert_eq!(
        phase1.value,
        Parsed::Histogram(
            buckets
                .iter()
                .map(|&(less_than, count)| HistogramCount { less_than, count })
                .collect()
        )
    );
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
