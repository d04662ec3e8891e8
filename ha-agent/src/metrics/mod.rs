//! Prometheus metrics: a plain-data [`Snapshot`] the agent fills
//! (`snapshot`, `histogram`), its rendering in the text exposition format,
//! version 0.0.4 (`text`), and a tiny HTTP/1.1 server for `GET /metrics`
//! ([`serve`], `server`).
//!
//! Why this shape: the agent's state lives in its main loop, so the server
//! owns none of it. For each scrape it sends a
//! [`oneshot`](tokio::sync::oneshot) sender through an
//! [`mpsc`](tokio::sync::mpsc) channel; the main loop fills a
//! [`Snapshot`], calls [`render`] and answers with the text. Rendering is
//! pure and tested line by line; the server is small enough to read in
//! one sitting and bounds everything a client controls (head size, time,
//! concurrent connections).
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
//! | `ha_heartbeats_dropped_total` | counter | `reason` | heartbeat frames dropped, by reason (`unauthenticated`, `replayed`, `unproven`, ...) |
//! | `ha_shared_frames_dropped_total` | counter | `frame`, `reason` | operator-state and health-view frames dropped, by kind (`operator_state`, `health_view`) and reason (`replayed`, `unproven`, `rate_limited`, ...) |
//! | `ha_switchover_phase1_seconds` | histogram | | backend switchover: decision to phase 1 done (backend entry written) |
//! | `ha_switchover_phase2_seconds` | histogram | | backend switchover: decision to phase 2 done (Maglev table flipped) |
//!
//! Label values are escaped as the format requires (`\\`, `\"`, `\n`);
//! the histograms use [`LATENCY_BUCKETS`] (1 µs to 1 s) unless the agent
//! builds them otherwise.
//!
//! # Why an own encoder, not `prometheus-client`
//!
//! Measured against `prometheus-client` 0.26 (the Prometheus project's
//! Rust client; its `encoding::prometheus_text` writes this same format,
//! 0.0.4) in a scratch crate, release build, rustc 1.95, the same
//! [`Snapshot`] fed to both: this module's [`render`] and a
//! `prometheus-client` `Collector` over the snapshot (`ConstCounter`,
//! `ConstGauge`, our histograms through `EncodeMetric::encode_histogram`).
//!
//! * It can express everything here: per-VIP/backend counters read from
//!   the per-CPU maps at scrape time (collector style), gauges, our
//!   histograms. Both outputs parse to the same samples (checked with
//!   `prometheus-parse`), and `promtool check metrics` (Prometheus 2.42)
//!   accepts ours with no lint finding, also at 1,000 VIPs and with
//!   escaped label values.
//! * Encode time, median thread CPU time of 50 renders, 1,000 VIPs x 10
//!   backends (43,117 lines, 2.9 MB): `prometheus-client` 13.4-14.0 ms
//!   plus 0.24 ms to clone the snapshot (a `Collector` must be `'static`);
//!   ours 15.3-16.5 ms as it was, 10.7 ms after escaping label values in
//!   place instead of into a new `String` each ([`render`] does that
//!   now). For 10 VIPs x 4 backends: 0.081 ms against 0.064 ms.
//! * Cost: 6 more crates (`prometheus-client`, its derive proc-macro,
//!   `dtoa`, `parking_lot`, `lock_api`, `parking_lot_core`; `syn` 3 is
//!   already built for clap), their units taking about 7 s (dev) and 11 s
//!   (release) at one job on a busy shared 2-core machine, and +82 KiB in
//!   a stripped release binary (406 KiB -> 488 KiB for the trial binary).
//! * What it would replace is small: the line writer (`Value`, `Out`,
//!   escaping: about 130 lines with their docs). The family definitions
//!   stay either way, and so does [`Histogram`]: `prometheus-client`'s is
//!   shared and locked (`Arc<Mutex>`) for instrumenting from many
//!   threads, while ours is plain data owned by the main loop and copied
//!   into the snapshot. Switching would also respell the `le` labels
//!   (`1e-06` instead of `0.000001`), which Prometheus before 3.0 stores
//!   as new series.
//!
//! So: the own encoder stays, faster and without new dependencies; the
//! tests pin its output line by line and parse it with a real parser.

mod histogram;
mod server;
mod snapshot;
mod text;

pub(crate) use histogram::Histogram;
pub(crate) use server::serve;
pub(crate) use snapshot::{BackendSample, ClusterSample, PeerSample, Snapshot, VipSample};
pub(crate) use text::{CONTENT_TYPE, render};
