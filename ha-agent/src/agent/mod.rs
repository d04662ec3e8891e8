//! The daemon's main loop: load the config, load (or adopt) the datapath,
//! keep the maps equal to the desired state as backend MACs are learned and
//! health checks and operators change backends, drive the cluster machine
//! and carry out its decisions, renew the ownership leases, answer the
//! control socket and metrics scrapes, and leave cleanly on SIGTERM/SIGINT.
//!
//! Every backend change is a two-phase switchover: phase 1 writes the one
//! BACKENDS entry (the datapath's re-probe moves that backend's flows at
//! once), phase 2 rebuilds the VIP's Maglev table into the inactive ring
//! generation and flips it. Without a `[cluster]` this node owns every
//! configured VIP; with one, the cluster machine (`cluster::state`) decides
//! and `ownership` carries it out.
//!
//! The loop only decides and writes maps: anything that may be slow (a
//! netlink dump, resolving a MAC, a hook, a fencing command) runs in a task
//! of its own and reports back as an event the loop reads, so heartbeats
//! and lease renewals always go out on time. What is fatal and what is
//! logged and retried: docs/architecture.md, "Error policy".
//!
//! This module holds the state and the loop; the handlers live beside it:
//! `backends` (maps, switchovers, reload), `cluster` (the state machine's
//! inputs and actions, eligibility, what is shared with peers),
//! `neighbours` (the kernel's neighbour table and link state, read off the
//! loop), `heartbeat_gaps` and `status` (hactl status, metrics).

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};

use crate::{
    cluster::{
        digest::digest,
        shared::{HealthView, OperatorState},
        shell::{Shell, wall_ms},
        state::Input,
    },
    config::{self, Config},
    control::{self, Request, Response},
    datapath::{
        Datapath, LoadOptions,
        bpffs::{self, Sharing},
        pins::{self, PinRecord},
    },
    desired::Knowledge,
    health,
    metrics::{self, Histogram},
    model::BackendKey,
    netlink::Netlink,
    ownership::Ownership,
    writer::Writer,
};

mod backends;
mod cluster;
mod heartbeat_gaps;
mod instance_lock;
mod neighbours;
mod status;

use backends::BackendChecks;
use heartbeat_gaps::HeartbeatGaps;
use neighbours::NeighbourWatch;

/// How often operator state and health views are sent again and
/// eligibility is checked.
const SHARE_PERIOD: Duration = Duration::from_secs(1);
/// How long start-up waits for backend MACs before going on without them.
const INITIAL_RESOLVE: Duration = Duration::from_secs(3);

pub struct Options {
    pub config: PathBuf,
    /// Leave program, link and maps pinned on exit (traffic keeps flowing).
    pub keep_datapath: bool,
    /// Load this XDP object instead of the embedded one (an upgrade of the
    /// datapath alone); it must be built from the same ha-common.
    pub xdp_object: Option<PathBuf>,
}

struct Agent {
    config: Config,
    /// Where `config` came from: a reload reads it again.
    config_path: PathBuf,
    writer: Writer,
    /// The backends' health checks of the current config.
    checks: BackendChecks,
    knowledge: Knowledge,
    ownership: Ownership,
    /// The cluster, when configured; without it this node owns every VIP.
    cluster: Option<Shell>,
    /// Where fencing commands report back.
    fenced: mpsc::UnboundedSender<(String, bool)>,
    /// Link up, datapath answering and tracks passing, as last checked.
    eligible: bool,
    /// The link state as last read (by `neighbours`).
    link_up: bool,
    /// Reads backend MACs and the link state off the loop.
    neighbours: NeighbourWatch,
    /// The longest silence of each peer.
    heartbeat_gaps: HeartbeatGaps,
    /// Track checks currently failing (all, until they first pass).
    tracks_down: BTreeSet<usize>,
    /// Drains and failovers, the same on every node.
    operator: OperatorState,
    /// The last failover request fed to the state machine.
    failovers_applied: u64,
    /// Backends this node's own checks find down (`knowledge.down` holds
    /// what the maps follow: see `effective_down`).
    own_down: BTreeSet<BackendKey>,
    /// Grows with every change of `own_down`.
    health_sequence: u64,
    /// The latest health view of every peer.
    peer_views: HashMap<String, HealthView>,
    /// Decision-to-phase latencies of backend switchovers, for metrics.
    phase1: Histogram,
    phase2: Histogram,
    /// When this agent started (ms since the UNIX epoch): failovers asked
    /// for before are history.
    started_ms: u64,
}

pub async fn run(options: Options) -> Result<()> {
    let config = config::load(&options.config)?;
    // Before anything is touched: pins, control socket, heartbeat port.
    let _instance = instance_lock::acquire(&config.node.control_socket, &config.node.name)?;
    // Built before anything is set up: a check that cannot be (an https
    // check's CA file) stops the start with the reason.
    let backend_checks = health::backend_checks(&config)?;
    let track_checks =
        health::track_checks(config.cluster.as_ref().map_or(&[][..], |c| &c.tracks[..]))?;
    let netlink = Netlink::open(&config.node.interface).await?;
    let node_mac = config.node.mac.unwrap_or(netlink.mac);
    let pin_dir = config.datapath.pin_dir.join(&config.node.name);
    if let Sharing::Private(why) = bpffs::prepare()? {
        if options.keep_datapath {
            bail!(
                "--keep-datapath cannot keep the datapath here: {why}, so the pins vanish with \
                 this agent and no later agent or hactl finds them. Enter only the network \
                 namespace instead, which keeps the host's bpffs: `nsenter \
                 --net=/var/run/netns/NAME ha-agent ...` (or start without --keep-datapath)"
            );
        }
        tracing::warn!(
            "{why}: hactl and the next agent will not see this datapath, and it goes away \
             when this agent exits; to keep it across restarts, start the agent with `nsenter \
             --net=/var/run/netns/NAME` instead of `ip netns exec`"
        );
    }
    // Before anything pinned is adopted: it must have been made for this
    // layout, these sizes, this interface and this MAC.
    pins::claim(
        &pin_dir,
        &PinRecord {
            layout: pins::layout_fingerprint(),
            ring_size: config.datapath.ring_size,
            max_flows: config.datapath.max_flows,
            ifindex: netlink.ifindex,
            interface: config.node.interface.clone(),
            node_mac: node_mac.0,
        },
    )?;
    let datapath = Datapath::load(&LoadOptions {
        ring_size: config.datapath.ring_size,
        max_flows: config.datapath.max_flows,
        node_mac: node_mac.0,
        pin_dir: Some(pin_dir.clone()),
        object: options.xdp_object.clone(),
    })?;
    let stale_owned = datapath
        .maps()
        .owned()?
        .into_iter()
        .map(|(addr, _)| addr)
        .collect();
    let ownership = Ownership::new(&config, netlink.ifindex, node_mac.0, stale_owned);
    let cluster = match &config.cluster {
        Some(cluster) => Some(Shell::open(&config, cluster).await?),
        None => None,
    };
    let (fenced_tx, mut fenced_rx) = mpsc::unbounded_channel();
    // Backends count as up until their checks say otherwise, so a restarted
    // agent does not take healthy backends out of service for rise x
    // interval.
    let checks = BackendChecks::start(backend_checks, &BTreeSet::new());
    let mut agent = Agent {
        writer: Writer::adopt(datapath, &config)?,
        config,
        config_path: options.config.clone(),
        checks,
        knowledge: Knowledge::default(),
        ownership,
        cluster,
        fenced: fenced_tx,
        eligible: false,
        link_up: false,
        neighbours: NeighbourWatch::start(netlink.clone(), Default::default()),
        heartbeat_gaps: HeartbeatGaps::default(),
        tracks_down: BTreeSet::new(),
        operator: OperatorState::default(),
        failovers_applied: 0,
        started_ms: wall_ms(),
        own_down: BTreeSet::new(),
        health_sequence: 0,
        peer_views: HashMap::new(),
        phase1: Histogram::default(),
        phase2: Histogram::default(),
    };

    let backends = agent.backend_addresses();
    agent.knowledge.macs = netlink.resolve(&backends, INITIAL_RESOLVE).await?;
    for addr in backends
        .iter()
        .filter(|a| !agent.knowledge.macs.contains_key(a))
    {
        tracing::warn!(backend = %addr, "no MAC yet: backend gets no traffic until it answers ARP/NDP");
    }
    agent.neighbours.want(agent.watched_addresses());
    agent.reconcile("start")?;
    agent.renew_leases()?;
    let mode = agent.writer.datapath.attach(&agent.config.node.interface)?;
    match netlink.xdp_tx_hazard(&agent.config.node.interface).await {
        Ok(None) => {}
        Ok(Some(hazard)) => tracing::warn!("{hazard}"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot check whether XDP_TX frames leave the interface")
        }
    }
    // Answering now: clients that cached another MAC for a VIP (the load
    // balancer this one replaces) learn this node's at once.
    agent.ownership.announce_standalone(&agent.config, None);
    // Standalone nodes never hear a frame; the unused sender keeps that
    // channel open.
    let (_no_frames, idle) = mpsc::channel(1);
    let mut frames = match &agent.cluster {
        Some(shell) => shell.spawn_reader(),
        None => idle,
    };
    if agent.cluster.is_some() {
        let digest = digest(&agent.config);
        agent
            .cluster_input(|now| Input::Digest { now, digest })
            .await?;
        agent.link_up = netlink.link_up().await.unwrap_or(false);
        agent.check_eligibility().await?;
    }
    let (control_tx, mut control_rx) = mpsc::channel::<control::Call>(16);
    let _control = control::serve(&agent.config.node.control_socket, control_tx)?;
    let (scrapes, mut scrape_rx) = mpsc::channel::<oneshot::Sender<String>>(4);
    if let Some(metrics) = &agent.config.metrics {
        let listener = TcpListener::bind(metrics.listen)
            .await
            .with_context(|| format!("bind metrics address {}", metrics.listen))?;
        tokio::spawn(metrics::serve(listener, scrapes));
    }
    let (track_tx, mut track_rx) = mpsc::unbounded_channel();
    let tracks = agent
        .config
        .cluster
        .as_ref()
        .map_or(&[][..], |c| &c.tracks[..]);
    agent.tracks_down = (0..tracks.len()).collect();
    let _tracks = track_checks.spawn(&agent.tracks_down, track_tx);
    tracing::info!(
        node = %agent.config.node.name,
        interface = %agent.config.node.interface,
        mac = %node_mac,
        ?mode,
        pins = %pin_dir.display(),
        control = %agent.config.node.control_socket.display(),
        vips = agent.config.vips.len(),
        "datapath attached"
    );

    crate::systemd::ready(&format!(
        "{} VIPs on {}, XDP {mode:?}",
        agent.config.vips.len(),
        agent.config.node.interface
    ));
    // Pinged from the main loop itself: a stuck loop stops pinging.
    let mut watchdog = crate::systemd::watchdog_period().map(|period| {
        let mut timer = tokio::time::interval(period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut lease_tick = tokio::time::interval(agent.ownership.renew_period());
    let mut share_tick = tokio::time::interval(SHARE_PERIOD);
    // Every handler returns only fatal errors (a map write failed): the
    // loop then ends as on SIGTERM, saying LEAVING, and the agent exits
    // with the error.
    let fatal = loop {
        let step = tokio::select! {
            Some((frame, from)) = frames.recv() => agent.on_frame(&frame, from).await,
            _ = tokio::time::sleep_until(agent.next_cluster_tick()) => {
                agent.cluster_input(|now| Input::Tick { now }).await
            }
            Some((node, success)) = fenced_rx.recv() => {
                agent.cluster_input(|now| Input::FenceDone { now, node, success }).await
            }
            Some(transition) = agent.checks.results.recv() => agent.on_health(transition).await,
            Some(transition) = track_rx.recv() => agent.on_track(transition).await,
            Some(reading) = agent.neighbours.readings.recv() => agent.on_neighbours(reading).await,
            Some(reply) = scrape_rx.recv() => {
                match agent.snapshot() {
                    Ok(snapshot) => {
                        let _ = reply.send(metrics::render(&snapshot));
                    }
                    // The scrape gets a 503; the next one tries again.
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "metrics snapshot failed"),
                }
                Ok(())
            }
            Some((request, reply)) = control_rx.recv() => {
                let _ = reply.send(agent.on_control(request).await);
                Ok(())
            }
            _ = lease_tick.tick() => agent.renew_leases(),
            _ = share_tick.tick() => agent.share_and_check().await,
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                crate::systemd::watchdog();
                Ok(())
            }
            _ = hangup.recv() => {
                // The outcome is logged either way.
                let _ = agent.reload().await;
                Ok(())
            }
            _ = terminate.recv() => break None,
            _ = interrupt.recv() => break None,
        };
        if let Err(e) = step {
            tracing::error!(error = %format!("{e:#}"), "fatal: leaving the cluster and exiting");
            break Some(e);
        }
    };
    crate::systemd::stopping();
    // Say LEAVING so peers take over at once.
    agent.cluster_input(|now| Input::Leave { now }).await?;

    let _ = std::fs::remove_file(&agent.config.node.control_socket);
    if options.keep_datapath {
        tracing::info!(pins = %pin_dir.display(), "exiting, datapath left running");
    } else {
        agent.writer.datapath.detach_and_unpin()?;
        tracing::info!("exiting, datapath detached and unpinned");
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Agent {
    async fn on_control(&mut self, request: Request) -> Response {
        let result = match request {
            Request::Status => return Response::Status(self.status()),
            Request::Reload => self.reload().await,
            Request::Standby { on } => self.set_standby(on).await,
            Request::Drain { vip, backend } => self.set_drained(&vip, backend, true).await,
            Request::Undrain { vip, backend } => self.set_drained(&vip, backend, false).await,
            Request::Failover { group, to } => self.failover(&group, to).await,
        };
        match result {
            Ok(message) => Response::Done { message },
            Err(e) => Response::Error {
                message: format!("{e:#}"),
            },
        }
    }

    /// Every second: operator state and health view to the peers (so a
    /// restarted or cut-off node catches up), eligibility (the datapath's
    /// self-check) and the health the maps follow as ownership moved.
    async fn share_and_check(&mut self) -> Result<()> {
        self.check_eligibility().await?;
        self.send_operator().await;
        self.send_health().await;
        self.sync_health("ownership", Instant::now())
    }
}
