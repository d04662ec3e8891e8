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
//! This module holds the state and the loop; the handlers live beside it:
//! `backends` (maps, switchovers, reload), `cluster` (the state machine's
//! inputs and actions, eligibility, what is shared with peers) and
//! `report` (hactl status, metrics).

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
mod status;

use backends::BackendChecks;

/// How often the neighbour table is read for new or changed backend MACs.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(1);
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
    let (_no_frames, idle) = mpsc::channel::<Vec<u8>>(1);
    let mut frames = match &agent.cluster {
        Some(shell) => shell.spawn_reader(),
        None => idle,
    };
    if agent.cluster.is_some() {
        let digest = digest(&agent.config);
        agent
            .cluster_input(|now| Input::Digest { now, digest })
            .await?;
        agent.check_eligibility(&netlink).await?;
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
    let mut neighbour_tick = tokio::time::interval(NEIGHBOUR_REFRESH);
    loop {
        tokio::select! {
            Some(frame) = frames.recv() => agent.on_frame(&frame).await?,
            _ = tokio::time::sleep_until(agent.next_cluster_tick()) => {
                agent.cluster_input(|now| Input::Tick { now }).await?;
            }
            Some((node, success)) = fenced_rx.recv() => {
                agent.cluster_input(|now| Input::FenceDone { now, node, success }).await?;
            }
            Some(transition) = agent.checks.results.recv() => agent.on_health(transition).await?,
            Some(transition) = track_rx.recv() => agent.on_track(transition, &netlink).await?,
            Some(reply) = scrape_rx.recv() => {
                let _ = reply.send(metrics::render(&agent.snapshot()?));
            }
            Some((request, reply)) = control_rx.recv() => {
                let _ = reply.send(agent.on_control(request, &netlink).await);
            }
            _ = lease_tick.tick() => agent.renew_leases()?,
            _ = neighbour_tick.tick() => {
                agent.refresh_neighbours(&netlink).await?;
                agent.check_eligibility(&netlink).await?;
                agent.send_operator().await;
                agent.send_health().await;
                agent.sync_health("ownership", Instant::now())?;
            }
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                crate::systemd::watchdog();
            }
            _ = hangup.recv() => {
                // The outcome is logged either way.
                let _ = agent.reload(&netlink).await;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    crate::systemd::stopping();
    // A graceful stop: say LEAVING so peers take over at once.
    agent.cluster_input(|now| Input::Leave { now }).await?;

    let _ = std::fs::remove_file(&agent.config.node.control_socket);
    if options.keep_datapath {
        tracing::info!(pins = %pin_dir.display(), "exiting, datapath left running");
    } else {
        agent.writer.datapath.detach_and_unpin()?;
        tracing::info!("exiting, datapath detached and unpinned");
    }
    Ok(())
}

impl Agent {
    async fn on_control(&mut self, request: Request, netlink: &Netlink) -> Response {
        let result = match request {
            Request::Status => return Response::Status(self.status()),
            Request::Reload => self.reload(netlink).await,
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
}
