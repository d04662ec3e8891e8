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

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_common::{
    BACKEND_F_DRAINING, BACKEND_F_HEALTHY, GlobalCounter, backend_stats_index, vip_stats_index,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};

use crate::{
    cluster::{
        shared::{
            FailoverRequest, HEALTH_MAGIC, HealthView, OPERATOR_MAGIC, OperatorState, Shared,
        },
        shell::{Received, Shell, wall_ms},
        state::{Action, Input},
    },
    config::{self, Config},
    control::{
        self, BackendStatus, ClusterStatus, PeerStatus, Request, Response, Status, VipStatus,
    },
    datapath::{Datapath, LoadOptions},
    desired::{Knowledge, backend_keys},
    health::{self, BackendKey, Checks, Transition},
    hooks::{self, Hook, Outcome},
    metrics::{self, BackendSample, ClusterSample, Histogram, PeerSample, Snapshot, VipSample},
    netlink::{Netlink, format_mac, solicit},
    ownership::{Event, Ownership},
    reload,
    writer::Writer,
};

/// How often the neighbour table is read for new or changed backend MACs.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(1);
/// How long start-up waits for backend MACs before going on without them.
const INITIAL_RESOLVE: Duration = Duration::from_secs(3);
/// How long a reload waits for the MACs of new backends (the neighbour
/// refresh picks up later answers).
const RELOAD_RESOLVE: Duration = Duration::from_millis(500);

pub struct Options {
    pub config: PathBuf,
    /// Leave program, link and maps pinned on exit (traffic keeps flowing).
    pub keep_datapath: bool,
    /// Load this XDP object instead of the embedded one (an upgrade of the
    /// datapath alone); it must be built from the same ha-common.
    pub xdp_object: Option<PathBuf>,
}

/// A control request with the way back to its connection.
type ControlCall = (Request, oneshot::Sender<Response>);

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
    let netlink = Netlink::open(&config.node.interface).await?;
    let node_mac = config.node.mac.unwrap_or(netlink.mac);
    let pin_dir = config.datapath.pin_dir.join(&config.node.name);
    let datapath = Datapath::load(&LoadOptions {
        ring_size: config.datapath.ring_size,
        max_flows: config.datapath.max_flows,
        node_mac,
        pin_dir: Some(pin_dir.clone()),
        object: options.xdp_object.clone(),
    })?;
    let stale_owned = datapath
        .maps()
        .owned()?
        .into_iter()
        .map(|(addr, _)| addr)
        .collect();
    let ownership = Ownership::new(&config, netlink.ifindex, node_mac, stale_owned);
    let cluster = match &config.cluster {
        Some(cluster) => Some(Shell::open(&config, cluster).await?),
        None => None,
    };
    let (fenced_tx, mut fenced_rx) = mpsc::unbounded_channel();
    // Backends count as up until their checks say otherwise, so a restarted
    // agent does not take healthy backends out of service for rise x
    // interval.
    let checks = BackendChecks::spawn(&config, &BTreeSet::new());
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
    // Standalone nodes never hear a frame; the unused sender keeps that
    // channel open.
    let (_no_frames, idle) = mpsc::channel::<Vec<u8>>(1);
    let mut frames = match &agent.cluster {
        Some(shell) => shell.spawn_reader(),
        None => idle,
    };
    if agent.cluster.is_some() {
        let digest = config::digest(&agent.config);
        agent
            .cluster_input(|now| Input::Digest { now, digest })
            .await?;
        agent.check_eligibility(&netlink).await?;
    }
    let (control_tx, mut control_rx) = mpsc::channel::<ControlCall>(16);
    let _control = serve_control(&agent.config.node.control_socket, control_tx)?;
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
    let _tracks = health::spawn_track_checks(tracks, track_tx);
    tracing::info!(
        node = %agent.config.node.name,
        interface = %agent.config.node.interface,
        mac = %format_mac(&node_mac),
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

/// Listens on the control socket (mode 0600: root only) and hands each
/// request to the main loop, which owns all state.
fn serve_control(path: &Path, calls: mpsc::Sender<ControlCall>) -> Result<ControlServer> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create control socket directory {}", dir.display()))?;
    }
    // A socket left by a killed agent would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let calls = calls.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, calls).await {
                    tracing::debug!(error = %e, "control connection");
                }
            });
        }
    });
    Ok(ControlServer(task))
}

/// The running health checks of one config and where their results
/// arrive. A reload replaces both, so a result of an old check (keyed by
/// the old config's positions) can never reach the new config.
struct BackendChecks {
    _checks: Checks,
    results: mpsc::UnboundedReceiver<Transition>,
}

impl BackendChecks {
    fn spawn(config: &Config, down: &BTreeSet<BackendKey>) -> BackendChecks {
        let (tx, results) = mpsc::unbounded_channel();
        BackendChecks {
            _checks: health::spawn_checks(config, down, tx),
            results,
        }
    }
}

/// Aborts the control listener with the agent.
struct ControlServer(tokio::task::JoinHandle<()>);

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn answer(stream: UnixStream, calls: mpsc::Sender<ControlCall>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let response = match control::decode::<Request>(&line) {
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            calls.send((request, tx)).await?;
            rx.await?
        }
        Err(e) => Response::Error {
            message: format!("{e:#}"),
        },
    };
    write
        .write_all(control::encode(&response).as_bytes())
        .await?;
    Ok(())
}

impl Agent {
    fn backend_addresses(&self) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = self
            .config
            .vips
            .iter()
            .flat_map(|v| v.backends.iter().map(|b| b.address))
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Brings every map to the desired state (phase 2 of a switchover).
    fn reconcile(&mut self, cause: &str) -> Result<()> {
        let started = Instant::now();
        let writes = self.writer.reconcile(&self.config, &self.knowledge)?;
        if writes == 0 {
            return Ok(());
        }
        tracing::info!(
            cause,
            writes,
            latency_us = started.elapsed().as_micros() as u64,
            "maps reconciled"
        );
        Ok(())
    }

    /// A backend's knowledge changed: switch it over in two phases and log
    /// the cause with the time from the decision to each phase done.
    fn switch_backend(&mut self, key: BackendKey, cause: &str, decided: Instant) -> Result<()> {
        let (entry, timings) =
            self.writer
                .switch_backend(&self.config, &self.knowledge, key, decided)?;
        self.phase1.observe_duration(timings.phase1);
        self.phase2.observe_duration(timings.phase2);
        let vip = &self.config.vips[key.vip];
        tracing::info!(
            vip = %vip.name,
            backend = %vip.backends[key.backend].address,
            healthy = entry.flags & BACKEND_F_HEALTHY != 0,
            draining = entry.flags & BACKEND_F_DRAINING != 0,
            cause,
            phase1_us = timings.phase1.as_micros() as u64,
            phase2_us = timings.phase2.as_micros() as u64,
            table_us = timings.compute.as_micros() as u64,
            "backend switched"
        );
        Ok(())
    }

    async fn on_health(&mut self, transition: Transition) -> Result<()> {
        let changed = if transition.up {
            self.own_down.remove(&transition.key)
        } else {
            self.own_down.insert(transition.key)
        };
        if !changed {
            return Ok(());
        }
        self.health_sequence += 1;
        self.send_health().await;
        let cause = format!(
            "health check {}: {}",
            if transition.up { "up" } else { "down" },
            transition.cause
        );
        self.sync_health(&cause, transition.at)
    }

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

    /// Reads the config file again and applies it, or changes nothing: an
    /// invalid file or a change that needs a restart is an error (logged,
    /// and returned to `hactl reload`). Health and drains follow each
    /// backend that stays; ids stay, so established flows keep theirs.
    async fn reload(&mut self, netlink: &Netlink) -> Result<String> {
        let outcome = self.try_reload(netlink).await;
        match &outcome {
            Ok(changes) => tracing::info!(%changes, "configuration reloaded"),
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                "configuration reload refused: running config unchanged"
            ),
        }
        outcome.map(|changes| format!("reloaded: {changes}"))
    }

    async fn try_reload(&mut self, netlink: &Netlink) -> Result<reload::Changes> {
        let new = config::load(&self.config_path)?;
        let changes = reload::diff(&self.config, &new)?;
        if new == self.config {
            return Ok(changes);
        }
        self.writer.renumber(&new)?;
        let old = std::mem::replace(&mut self.config, new);
        self.own_down = reload::follow(&old, &self.config, &self.own_down);
        self.knowledge.down = reload::follow(&old, &self.config, &self.knowledge.down);
        self.knowledge.drained = self.operator_drains();
        self.checks = BackendChecks::spawn(&self.config, &self.own_down);
        self.ownership.reconfigure(&self.config);
        let digest = config::digest(&self.config);
        self.cluster_input(|now| Input::Digest { now, digest })
            .await?;
        let backends = self.backend_addresses();
        let missing: Vec<IpAddr> = backends
            .into_iter()
            .filter(|a| !self.knowledge.macs.contains_key(a))
            .collect();
        let table = netlink.resolve(&missing, RELOAD_RESOLVE).await?;
        let learned = missing
            .iter()
            .filter_map(|a| table.get(a).map(|m| (*a, *m)));
        self.knowledge.macs.extend(learned);
        self.reconcile("reload")?;
        self.renew_leases()?;
        self.sync_health("reload", Instant::now())?;
        Ok(changes)
    }

    async fn set_standby(&mut self, on: bool) -> Result<String> {
        if self.cluster.is_none() {
            anyhow::bail!("no cluster configured: a single node cannot stand by");
        }
        self.cluster_input(|now| Input::Standby { now, on }).await?;
        Ok(if on {
            "standing by: every VIP released, none taken until unstandby".into()
        } else {
            "standby ended".into()
        })
    }

    /// Drains are operator state: changed here, applied here and on every
    /// peer (which may have been typed on any node).
    async fn set_drained(&mut self, vip: &str, backend: IpAddr, drained: bool) -> Result<String> {
        let key = self.find_backend(vip, backend)?;
        let entry = (self.config.vips[key.vip].name.clone(), backend);
        let verb = if drained { "drained" } else { "undrained" };
        if self.operator.drained.contains(&entry) == drained {
            return Ok(format!("{backend} of {vip} was already {verb}"));
        }
        let me = self.config.node.name.clone();
        self.operator.change(&me, |state| {
            if drained {
                state.drained.insert(entry);
            } else {
                state.drained.remove(&entry);
            }
        });
        self.apply_operator().await?;
        self.send_operator().await;
        Ok(format!("{backend} of {vip} {verb}"))
    }

    /// `hactl failover`: the group's owner gives it up, `to` preferred;
    /// delivered to every node as operator state.
    async fn failover(&mut self, group: &str, to: Option<String>) -> Result<String> {
        if self.cluster.is_none() {
            anyhow::bail!("no cluster configured: nothing to fail over to");
        }
        let index = self
            .config
            .groups
            .iter()
            .position(|g| g == group)
            .with_context(|| format!("no VIP group named {group}"))?;
        if let Some(node) = &to {
            let known = self
                .config
                .cluster
                .as_ref()
                .is_some_and(|c| c.nodes.iter().any(|n| &n.name == node));
            anyhow::ensure!(known, "no cluster node named {node}");
        }
        let me = self.config.node.name.clone();
        let id = self.operator.version + 1;
        let request = FailoverRequest {
            id,
            group: group.to_string(),
            to: to.clone(),
            issued_at_ms: wall_ms(),
        };
        self.operator
            .change(&me, |state| state.failover = Some(request));
        self.failovers_applied = id;
        let target = to.clone();
        self.cluster_input(|now| Input::Failover {
            now,
            group: index,
            to: target,
        })
        .await?;
        self.send_operator().await;
        Ok(match to {
            Some(node) => format!("failover of {group} to {node} requested"),
            None => format!("failover of {group} requested"),
        })
    }

    /// Brings drains and failovers in line with the operator state.
    async fn apply_operator(&mut self) -> Result<()> {
        let decided = Instant::now();
        let wanted = self.operator_drains();
        let changed: Vec<BackendKey> = wanted
            .symmetric_difference(&self.knowledge.drained)
            .copied()
            .collect();
        self.knowledge.drained = wanted;
        let cause = format!(
            "operator state v{} from {}",
            self.operator.version, self.operator.origin
        );
        for key in changed {
            self.switch_backend(key, &cause, decided)?;
        }
        let Some(request) = self.operator.failover.clone() else {
            return Ok(());
        };
        if request.id <= self.failovers_applied || request.issued_at_ms < self.started_ms {
            return Ok(());
        }
        self.failovers_applied = request.id;
        if let Some(group) = self.config.groups.iter().position(|g| *g == request.group) {
            tracing::info!(group = %request.group, to = ?request.to, "failover requested");
            self.cluster_input(|now| Input::Failover {
                now,
                group,
                to: request.to,
            })
            .await?;
        }
        Ok(())
    }

    /// The backends the operator state drains, in this config.
    fn operator_drains(&self) -> BTreeSet<BackendKey> {
        self.operator
            .drained
            .iter()
            .filter_map(|(vip, addr)| self.find_backend(vip, *addr).ok())
            .collect()
    }

    /// Sends the operator state to every peer (on a change, and every
    /// second so that a restarted or cut-off node catches up).
    async fn send_operator(&self) {
        if let Some(shell) = &self.cluster {
            shell.share(OPERATOR_MAGIC, &self.operator).await;
        }
    }

    /// Sends this node's health view to every peer (on a change, and every
    /// second).
    async fn send_health(&self) {
        if let Some(shell) = &self.cluster {
            let view = HealthView {
                node: self.config.node.name.clone(),
                sequence: self.health_sequence,
                down: self.named(&self.own_down),
            };
            shell.share(HEALTH_MAGIC, &view).await;
        }
    }

    /// Backends by (VIP name, address), the form peers understand.
    fn named(&self, keys: &BTreeSet<BackendKey>) -> BTreeSet<(String, IpAddr)> {
        keys.iter()
            .map(|k| {
                let vip = &self.config.vips[k.vip];
                (vip.name.clone(), vip.backends[k.backend].address)
            })
            .collect()
    }

    /// The health the maps follow: for a group this node owns (or that no
    /// peer claims) its own checks; for a group a peer owns, that owner's
    /// view, so every node holds the owner's ring and a failover keeps
    /// every flow on its backend.
    fn effective_down(&self) -> BTreeSet<BackendKey> {
        let Some(shell) = &self.cluster else {
            return self.own_down.clone();
        };
        let peers = shell.machine.peers();
        backend_keys(&self.config)
            .filter(|key| {
                let vip = &self.config.vips[key.vip];
                let owner = peers
                    .iter()
                    .find(|p| p.up && p.claims.contains(&(vip.group as u16)))
                    .and_then(|p| self.peer_views.get(&p.node));
                match owner {
                    Some(view) if !self.ownership.owns(vip.group) => view
                        .down
                        .contains(&(vip.name.clone(), vip.backends[key.backend].address)),
                    _ => self.own_down.contains(key),
                }
            })
            .collect()
    }

    /// Switches the backends whose effective health changed.
    fn sync_health(&mut self, cause: &str, decided: Instant) -> Result<()> {
        let wanted = self.effective_down();
        let changed: Vec<BackendKey> = wanted
            .symmetric_difference(&self.knowledge.down)
            .copied()
            .collect();
        self.knowledge.down = wanted;
        for key in changed {
            self.switch_backend(key, cause, decided)?;
        }
        Ok(())
    }

    /// A VIP by name or address (when only one VIP has it), then one of its
    /// backends by address.
    fn find_backend(&self, vip: &str, backend: IpAddr) -> Result<BackendKey> {
        let by_name = self.config.vips.iter().position(|v| v.name == vip);
        let index = match by_name {
            Some(index) => index,
            None => {
                let address: IpAddr = vip
                    .parse()
                    .map_err(|_| anyhow::anyhow!("no VIP named {vip}"))?;
                let matching: Vec<usize> = (0..self.config.vips.len())
                    .filter(|&i| self.config.vips[i].address == address)
                    .collect();
                match matching.as_slice() {
                    [one] => *one,
                    [] => anyhow::bail!("no VIP with address {vip}"),
                    _ => anyhow::bail!("several VIPs have address {vip}: name one"),
                }
            }
        };
        let vip = &self.config.vips[index];
        let position = vip
            .backends
            .iter()
            .position(|b| b.address == backend)
            .with_context(|| format!("{backend} is not a backend of {}", vip.name))?;
        Ok(BackendKey {
            vip: index,
            backend: position,
        })
    }

    fn cluster_status(&self, shell: &Shell) -> ClusterStatus {
        let now = shell.now();
        ClusterStatus {
            quorum: shell.machine.has_quorum(),
            owned: (0..self.config.groups.len())
                .filter(|g| self.ownership.owns(*g))
                .map(|g| self.config.groups[g].clone())
                .collect(),
            peers: shell
                .machine
                .peers()
                .into_iter()
                .map(|p| PeerStatus {
                    node: p.node,
                    up: p.up,
                    last_heard_ms: p
                        .last_heard
                        .map(|t| now.saturating_sub(t).as_millis() as u64),
                    eligible: p.eligible,
                    priority: p.priority,
                    digest_matches: p.digest_matches,
                })
                .collect(),
            dropped: shell
                .rejected()
                .into_iter()
                .map(|(reason, count)| (reason.name().to_string(), count))
                .collect(),
        }
    }

    /// What Prometheus sees: the datapath's counters summed over CPUs,
    /// health, drains, ownership, the cluster and switchover latencies.
    fn snapshot(&self) -> Result<Snapshot> {
        let counters = self.writer.datapath.maps().counters()?;
        let vips = self
            .config
            .vips
            .iter()
            .enumerate()
            .map(|(index, vip)| {
                let id = self.writer.ids().vip(&self.config, index);
                let c = counters[vip_stats_index(id) as usize];
                VipSample {
                    name: vip.name.clone(),
                    address: vip.address,
                    port: vip.port,
                    protocol: vip.protocol,
                    packets: c.packets,
                    bytes: c.bytes,
                    owned: self.ownership.owns(vip.group),
                }
            })
            .collect();
        let backends = backend_keys(&self.config)
            .map(|key| {
                let id = self.writer.ids().backend(&self.config, key);
                let c = counters[backend_stats_index(id) as usize];
                let entry = self
                    .knowledge
                    .backend_entry(&self.config, self.writer.ids(), key);
                let vip = &self.config.vips[key.vip];
                BackendSample {
                    vip: vip.name.clone(),
                    address: vip.backends[key.backend].address,
                    packets: c.packets,
                    bytes: c.bytes,
                    up: entry.flags & BACKEND_F_HEALTHY != 0,
                    draining: entry.flags & BACKEND_F_DRAINING != 0,
                }
            })
            .collect();
        let globals = GlobalCounter::ALL
            .iter()
            .map(|g| {
                (
                    g.name(),
                    counters[*g as usize].packets,
                    counters[*g as usize].bytes,
                )
            })
            .collect();
        let cluster = self.cluster.as_ref().map(|shell| {
            let now = shell.now();
            ClusterSample {
                quorum: shell.machine.has_quorum(),
                peers: shell
                    .machine
                    .peers()
                    .into_iter()
                    .map(|p| PeerSample {
                        node: p.node,
                        up: p.up,
                        last_heard_seconds: p
                            .last_heard
                            .map(|t| now.saturating_sub(t).as_secs_f64()),
                    })
                    .collect(),
                dropped: shell
                    .rejected()
                    .into_iter()
                    .map(|(reason, n)| (reason.name(), n))
                    .collect(),
            }
        });
        Ok(Snapshot {
            node: self.config.node.name.clone(),
            vips,
            backends,
            globals,
            cluster,
            decisions: self.phase2.clone(),
            phase1: self.phase1.clone(),
        })
    }

    fn status(&self) -> Status {
        let counters = self.writer.datapath.maps().counters().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "status without counters");
            Vec::new()
        });
        let counter = |index: u32| counters.get(index as usize).copied().unwrap_or_default();
        let ids = self.writer.ids();
        let vips = self
            .config
            .vips
            .iter()
            .enumerate()
            .map(|(index, vip)| {
                let c = counter(vip_stats_index(ids.vip(&self.config, index)));
                VipStatus {
                    name: vip.name.clone(),
                    address: vip.address,
                    port: vip.port,
                    protocol: vip.protocol.to_string(),
                    owner: self.owner(vip.group),
                    packets: c.packets,
                    bytes: c.bytes,
                    backends: backend_keys(&self.config)
                        .filter(|k| k.vip == index)
                        .map(|key| {
                            let backend = &vip.backends[key.backend];
                            let id = ids.backend(&self.config, key);
                            let entry = self.knowledge.backend_entry(&self.config, ids, key);
                            let c = counter(backend_stats_index(id));
                            BackendStatus {
                                id,
                                address: backend.address,
                                up: !self.knowledge.down.contains(&key),
                                draining: entry.flags & BACKEND_F_DRAINING != 0,
                                resolved: self.knowledge.mac(&self.config, key).is_some(),
                                weight: backend.weight,
                                packets: c.packets,
                                bytes: c.bytes,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Status {
            node: self.config.node.name.clone(),
            vips,
            cluster: self
                .cluster
                .as_ref()
                .map(|shell| self.cluster_status(shell)),
        }
    }

    /// Who answers for `group`: this node, or the UP peer claiming it.
    fn owner(&self, group: usize) -> Option<String> {
        if self.ownership.owns(group) {
            return Some(self.config.node.name.clone());
        }
        let shell = self.cluster.as_ref()?;
        shell
            .machine
            .peers()
            .into_iter()
            .find(|p| p.up && p.claims.contains(&(group as u16)))
            .map(|p| p.node)
    }

    /// Renews the ARP/NDP leases of the groups this node owns.
    fn renew_leases(&mut self) -> Result<()> {
        self.ownership
            .renew(&self.config, &mut self.writer.datapath)
    }

    /// When the cluster machine needs its next tick; far away without one.
    fn next_cluster_tick(&self) -> tokio::time::Instant {
        self.cluster.as_ref().map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            Shell::next_tick,
        )
    }

    /// Feeds the cluster machine (if there is a cluster) and carries out
    /// what it decides.
    async fn cluster_input(&mut self, input: impl FnOnce(Duration) -> Input) -> Result<()> {
        let Some(shell) = self.cluster.as_mut() else {
            return Ok(());
        };
        let input = input(shell.now());
        let actions = shell.handle(input).await;
        for action in actions {
            self.act(action)?;
        }
        Ok(())
    }

    async fn on_frame(&mut self, frame: &[u8]) -> Result<()> {
        match self.cluster.as_mut().and_then(|shell| shell.accept(frame)) {
            Some(Received::Heartbeat(input)) => self.cluster_input(|_| input).await,
            Some(Received::Shared(Shared::Operator(state))) => {
                if self.operator.adopt(state) {
                    self.apply_operator().await?;
                }
                Ok(())
            }
            Some(Received::Shared(Shared::Health(view))) => {
                let newer = self
                    .peer_views
                    .get(&view.node)
                    .is_none_or(|known| view.sequence > known.sequence || view.down != known.down);
                if newer {
                    let cause = format!("health view of {}", view.node);
                    self.peer_views.insert(view.node.clone(), view);
                    self.sync_health(&cause, Instant::now())?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn act(&mut self, action: Action) -> Result<()> {
        let datapath = &mut self.writer.datapath;
        match action {
            Action::Take { group, reason } => {
                tracing::info!(group = %self.config.groups[group], %reason, "VIP group taken");
                self.ownership
                    .take(&self.config, datapath, group, &reason.to_string())?;
                self.sync_health("took the group: own health checks rule", Instant::now())?;
            }
            Action::Release { group, reason } => {
                tracing::info!(group = %self.config.groups[group], %reason, "VIP group released");
                self.ownership
                    .release(&self.config, datapath, group, &reason.to_string())?;
                self.sync_health("released the group: the owner's view rules", Instant::now())?;
            }
            Action::Fault(fault) => {
                tracing::error!(%fault, "cluster fault: this node takes no VIP until it is resolved");
                self.ownership
                    .hook(&self.config, Event::Fault, None, &fault.to_string());
            }
            Action::Recovered(fault) => tracing::info!(%fault, "cluster fault resolved"),
            Action::Fence { node } => self.fence(node),
            Action::PeerUp { node } => tracing::info!(%node, "peer up"),
            Action::PeerDown { node, leaving } => tracing::info!(%node, leaving, "peer down"),
            Action::Send(_) => {}
        }
        Ok(())
    }

    /// Runs the fencing command against `node` in the background; its
    /// outcome comes back to the main loop.
    fn fence(&self, node: String) {
        let Some(cluster) = &self.config.cluster else {
            return;
        };
        let Some(command) = cluster.fence_command.clone() else {
            let _ = self.fenced.send((node, false));
            return;
        };
        let hook = Hook {
            command,
            env: vec![
                ("HA_EVENT".into(), "fence".into()),
                ("HA_NODE".into(), self.config.node.name.clone()),
                ("HA_FENCE_NODE".into(), node.clone()),
            ],
            timeout: cluster.fence_timeout,
        };
        let fenced = self.fenced.clone();
        tokio::spawn(async move {
            let outcome = hooks::run(&hook).await;
            tracing::info!(%node, ?outcome, "fencing done");
            let _ = fenced.send((node, outcome == Outcome::Succeeded));
        });
    }

    /// Picks up backends that answered since, and MACs that changed.
    async fn refresh_neighbours(&mut self, netlink: &Netlink) -> Result<()> {
        let backends = self.backend_addresses();
        let table = netlink.neighbours().await?;
        let macs: HashMap<IpAddr, [u8; 6]> = backends
            .iter()
            .filter_map(|a| table.get(a).map(|m| (*a, *m)))
            .collect();
        for addr in backends.iter().filter(|a| !macs.contains_key(a)) {
            solicit(*addr).await;
        }
        if macs != self.knowledge.macs {
            for (addr, mac) in &macs {
                if self.knowledge.macs.get(addr) != Some(mac) {
                    tracing::info!(backend = %addr, mac = %format_mac(mac), "backend MAC learned");
                }
            }
            self.knowledge.macs = macs;
            self.reconcile("neighbour table changed")?;
        }
        self.probe_tie_breaker(&table).await
    }

    /// Eligible to own VIPs: the link is up, the datapath answers its
    /// self-check and every track check passes. Told to the cluster.
    async fn check_eligibility(&mut self, netlink: &Netlink) -> Result<()> {
        if self.cluster.is_none() {
            return Ok(());
        }
        let link = netlink.link_up().await.unwrap_or(false);
        let datapath = self.writer.datapath.self_check();
        let tracks = self.tracks_down.is_empty();
        let eligible = link && datapath && tracks;
        if eligible != self.eligible {
            tracing::info!(eligible, link, datapath, tracks, "eligibility changed");
            self.eligible = eligible;
        }
        self.cluster_input(|now| Input::Eligibility { now, eligible })
            .await
    }

    async fn on_track(&mut self, transition: Transition<usize>, netlink: &Netlink) -> Result<()> {
        let track = transition.key;
        tracing::info!(track, up = transition.up, cause = %transition.cause, "track check changed");
        if transition.up {
            self.tracks_down.remove(&track);
        } else {
            self.tracks_down.insert(track);
        }
        self.check_eligibility(netlink).await
    }

    /// Two-node clusters: the tie-breaker counts as reachable while it
    /// answers ARP/NDP on our link (typically the gateway). It is nudged
    /// every refresh, so an entry that stops answering goes FAILED (and
    /// drops out of the table) within about ten seconds of kernel probing.
    async fn probe_tie_breaker(&mut self, table: &HashMap<IpAddr, [u8; 6]>) -> Result<()> {
        let Some(tie_breaker) = self.config.cluster.as_ref().and_then(|c| c.tie_breaker) else {
            return Ok(());
        };
        solicit(tie_breaker).await;
        let reachable = table.contains_key(&tie_breaker);
        self.cluster_input(|now| Input::TieBreaker { now, reachable })
            .await
    }
}
