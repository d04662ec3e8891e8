//! The agent in its cluster: feeding the state machine and carrying out
//! its decisions (ownership, hooks, fencing), eligibility, and the operator
//! state and health views shared with the peers.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::Agent;
use crate::{
    cluster::{
        shared::{FailoverRequest, HEALTH_MAGIC, HealthView, OPERATOR_MAGIC, Shared},
        shell::{Received, Shell, wall_ms},
        state::{Action, Input},
    },
    health::Transition,
    hooks::{self, Outcome},
    model::Mac,
    ownership::Event,
};

impl Agent {
    pub(super) async fn set_standby(&mut self, on: bool) -> Result<String> {
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

    /// `hactl failover`: the group's owner gives it up, `to` preferred;
    /// delivered to every node as operator state.
    pub(super) async fn failover(&mut self, group: &str, to: Option<String>) -> Result<String> {
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
    pub(super) async fn apply_operator(&mut self) -> Result<()> {
        let decided = Instant::now();
        let cause = format!(
            "operator state v{} from {}",
            self.operator.version, self.operator.origin
        );
        let wanted = self.operator_drains();
        self.switch_set(|k| &mut k.drained, wanted, &cause, decided)?;
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

    /// Sends the operator state to every peer (on a change, and every
    /// second so that a restarted or cut-off node catches up).
    pub(super) async fn send_operator(&mut self) {
        if let Some(shell) = &mut self.cluster {
            shell.share(OPERATOR_MAGIC, &self.operator).await;
        }
    }

    /// Sends this node's health view to every peer (on a change, and every
    /// second).
    pub(super) async fn send_health(&mut self) {
        let view = HealthView {
            node: self.config.node.name.clone(),
            sequence: self.health_sequence,
            down: self.named(&self.own_down),
        };
        if let Some(shell) = &mut self.cluster {
            shell.share(HEALTH_MAGIC, &view).await;
        }
    }

    /// Who answers for `group`: this node, or the UP peer claiming it.
    pub(super) fn owner(&self, group: usize) -> Option<String> {
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
    pub(super) fn renew_leases(&mut self) -> Result<()> {
        self.ownership
            .renew(&self.config, &mut self.writer.datapath)
    }

    /// When the cluster machine needs its next tick; far away without one.
    pub(super) fn next_cluster_tick(&self) -> tokio::time::Instant {
        self.cluster.as_ref().map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            Shell::next_tick,
        )
    }

    /// Feeds the cluster machine (if there is a cluster) and carries out
    /// what it decides.
    pub(super) async fn cluster_input(
        &mut self,
        input: impl FnOnce(Duration) -> Input,
    ) -> Result<()> {
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

    pub(super) async fn on_frame(&mut self, frame: &[u8], from: SocketAddr) -> Result<()> {
        match self
            .cluster
            .as_mut()
            .and_then(|shell| shell.accept(frame, from))
        {
            Some(Received::Heartbeat(input)) => {
                if let Input::Heartbeat { now, hb } = &input {
                    self.heartbeat_gaps.heard(&hb.node, *now);
                }
                self.cluster_input(|_| input).await
            }
            Some(Received::Shared(Shared::Operator(state))) => {
                if self.operator.adopt(state) {
                    self.apply_operator().await?;
                }
                Ok(())
            }
            // The shell hands over only fresh views of the sender's live
            // incarnation, a changed one at most once per interval.
            Some(Received::Shared(Shared::Health(view))) => {
                let changed = self
                    .peer_views
                    .get(&view.node)
                    .is_none_or(|known| view.down != known.down);
                if changed {
                    let cause = format!("health view {} of {}", view.sequence, view.node);
                    self.peer_views.insert(view.node.clone(), view);
                    self.sync_health(&cause, Instant::now())?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub(super) fn act(&mut self, action: Action) -> Result<()> {
        let datapath = &mut self.writer.datapath;
        match action {
            Action::Take { group, cause } => {
                tracing::info!(group = %self.config.groups[group], reason = %cause, "VIP group taken");
                self.ownership
                    .take(&self.config, datapath, group, &cause.to_string())?;
                self.sync_health("took the group: own health checks rule", Instant::now())?;
            }
            Action::Release { group, cause } => {
                tracing::info!(group = %self.config.groups[group], reason = %cause, "VIP group released");
                self.ownership
                    .release(&self.config, datapath, group, &cause.to_string())?;
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
    pub(super) fn fence(&self, node: String) {
        if self.config.cluster.is_none() {
            return;
        }
        let Some(hook) = hooks::fence_hook(&self.config, &node) else {
            let _ = self.fenced.send((node, false));
            return;
        };
        let fenced = self.fenced.clone();
        tokio::spawn(async move {
            let outcome = hooks::run(&hook).await;
            tracing::info!(%node, ?outcome, "fencing done");
            let _ = fenced.send((node, outcome == Outcome::Succeeded));
        });
    }

    /// Eligible to own VIPs: the link is up, the datapath answers its
    /// self-check and every track check passes. Told to the cluster.
    pub(super) async fn check_eligibility(&mut self) -> Result<()> {
        if self.cluster.is_none() {
            return Ok(());
        }
        let link = self.link_up;
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

    pub(super) async fn on_track(&mut self, transition: Transition<usize>) -> Result<()> {
        let track = transition.key;
        tracing::info!(track, up = transition.up, cause = %transition.cause, "track check changed");
        if transition.up {
            self.tracks_down.remove(&track);
        } else {
            self.tracks_down.insert(track);
        }
        self.check_eligibility().await
    }

    /// Two-node clusters: the tie-breaker counts as reachable while it
    /// answers ARP/NDP on our link (typically the gateway). The neighbour
    /// watch nudges it at every reading, so an entry that stops answering goes
    /// FAILED (and drops out of the table) within about ten seconds of
    /// kernel probing.
    pub(super) async fn tell_tie_breaker(&mut self, table: &HashMap<IpAddr, Mac>) -> Result<()> {
        let Some(tie_breaker) = self.config.cluster.as_ref().and_then(|c| c.tie_breaker) else {
            return Ok(());
        };
        let reachable = table.contains_key(&tie_breaker);
        self.cluster_input(|now| Input::TieBreaker { now, reachable })
            .await
    }
}
