//! What the agent tells about itself from its own state: the answer to
//! `hactl status` and the Prometheus [`Snapshot`]. (`hactl maps` reads the
//! pinned maps without the agent: `crate::maps_view`.)

use anyhow::Result;
use ha_common::{
    BACKEND_F_DRAINING, BACKEND_F_HEALTHY, Counter, GlobalCounter, backend_stats_index,
    vip_stats_index,
};

use super::Agent;
use crate::{
    cluster::shell::Shell,
    control::{BackendStatus, ClusterStatus, PeerStatus, Status, VipStatus},
    desired::backend_keys,
    metrics::{BackendSample, ClusterSample, PeerSample, Snapshot, VipSample},
    model::BackendKey,
};

impl Agent {
    pub(super) fn cluster_status(&self, shell: &Shell) -> ClusterStatus {
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
                    longest_gap_ms: self
                        .heartbeat_gaps
                        .longest(&p.node)
                        .map(|gap| gap.as_millis() as u64),
                    node: p.node,
                    up: p.up,
                    last_heard_ms: p
                        .last_heard
                        .map(|t| now.saturating_sub(t).as_millis() as u64),
                    rtt_us: p.rtt.map(|rtt| rtt.as_micros() as u64),
                    eligible: p.eligible,
                    priority: p.priority,
                    digest_matches: p.digest_matches,
                })
                .collect(),
            // Heartbeats by reason, shared frames by kind and reason.
            dropped: shell
                .rejected()
                .into_iter()
                .map(|(reason, count)| (reason.to_string(), count))
                .chain(
                    shell
                        .shared_rejected()
                        .into_iter()
                        .map(|(kind, reason, count)| (format!("{kind} {reason}"), count)),
                )
                .collect(),
        }
    }

    /// The `index`th VIP's counter in `counters` (all of STATS).
    fn vip_counter(&self, counters: &[Counter], index: usize) -> Counter {
        let id = self.writer.ids().vip(&self.config, index);
        counters
            .get(vip_stats_index(id) as usize)
            .copied()
            .unwrap_or_default()
    }

    fn backend_counter(&self, counters: &[Counter], key: BackendKey) -> Counter {
        let id = self.writer.ids().backend(&self.config, key);
        counters
            .get(backend_stats_index(id) as usize)
            .copied()
            .unwrap_or_default()
    }

    /// What Prometheus sees: the datapath's counters summed over CPUs,
    /// health, drains, ownership, the cluster and switchover latencies.
    pub(super) fn snapshot(&self) -> Result<Snapshot> {
        let counters = self.writer.datapath.maps().counters()?;
        let vips = self
            .config
            .vips
            .iter()
            .enumerate()
            .map(|(index, vip)| {
                let c = self.vip_counter(&counters, index);
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
                let c = self.backend_counter(&counters, key);
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
                        longest_gap_seconds: self
                            .heartbeat_gaps
                            .longest(&p.node)
                            .map(|gap| gap.as_secs_f64()),
                        node: p.node,
                        up: p.up,
                        last_heard_seconds: p
                            .last_heard
                            .map(|t| now.saturating_sub(t).as_secs_f64()),
                        rtt_seconds: p.rtt.map(|rtt| rtt.as_secs_f64()),
                    })
                    .collect(),
                dropped: shell.rejected(),
                shared_dropped: shell.shared_rejected(),
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

    pub(super) fn status(&self) -> Status {
        let counters = self.writer.datapath.maps().counters().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "status without counters");
            Vec::new()
        });
        let ids = self.writer.ids();
        let vips = self
            .config
            .vips
            .iter()
            .enumerate()
            .map(|(index, vip)| {
                let c = self.vip_counter(&counters, index);
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
                            let c = self.backend_counter(&counters, key);
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
}
