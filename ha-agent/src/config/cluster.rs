//! `[cluster]`: the nodes, timing, quorum, fencing, announcements, hooks
//! and track checks, validated against this node and the VIPs (a node's
//! address must not be a VIP's, quorum depends on the number of nodes).

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::check::CheckFields;
use super::error::Source;
use super::raw::{RawCluster, RawTrack};
use super::validate::check_node_name;
use super::{
    CheckKind, ClusterConfig, ClusterNode, ConfigError, DEFAULT_CLUSTER_PORT,
    DEFAULT_FENCE_TIMEOUT, DEFAULT_HOOK_TIMEOUT, DEFAULT_PRIORITY, FencingConfig,
    MAX_CHECK_DURATION, MAX_HEARTBEAT_INTERVAL, MIN_CHECK_DURATION, MIN_HEARTBEAT_INTERVAL,
    NodeConfig, QuorumConfig, TrackConfig, VipConfig, format_duration,
};
use crate::cluster::state;

impl Source<'_> {
    /// `[cluster]`, checked against this node and the VIPs.
    pub(super) fn cluster(
        &self,
        spanned: &Spanned<RawCluster>,
        node: &NodeConfig,
        vips: &[VipConfig],
    ) -> Result<ClusterConfig, ConfigError> {
        let raw = spanned.get_ref();
        if *raw.id.get_ref() == 0 {
            return Err(self.at(&raw.id, "cluster.id", "must be at least 1"));
        }
        let key_file = raw.key_file.get_ref();
        if !Path::new(key_file).is_absolute() || key_file.contains('\0') {
            return Err(self.at(
                &raw.key_file,
                "cluster.key_file",
                "must be an absolute path",
            ));
        }
        let port = match &raw.port {
            Some(port) if *port.get_ref() == 0 => {
                return Err(self.at(port, "cluster.port", "must be 1..=65535"));
            }
            Some(port) => *port.get_ref(),
            None => DEFAULT_CLUSTER_PORT,
        };
        let duration = |raw: &Option<Spanned<String>>,
                        name: &str,
                        range: RangeInclusive<Duration>,
                        default: Duration| match raw {
            Some(raw) => self.duration_in(raw, &format!("cluster.{name}"), range),
            None => Ok(default),
        };
        let interval = duration(
            &raw.interval,
            "interval",
            MIN_HEARTBEAT_INTERVAL..=MAX_HEARTBEAT_INTERVAL,
            state::DEFAULT_INTERVAL,
        )?;
        let dead_after = match &raw.dead_after {
            Some(written) => {
                let dead_after = self.duration(written, "cluster.dead_after")?;
                let least = interval * state::MIN_DEAD_INTERVALS;
                if dead_after < least {
                    let of = if raw.interval.is_some() {
                        ""
                    } else {
                        " (default)"
                    };
                    return Err(self.at(
                        written,
                        "cluster.dead_after",
                        format!(
                            "{} must be at least {} x the interval {}{of}, {}, so that one lost heartbeat does not take a peer down and quorum has time for a round trip",
                            format_duration(dead_after),
                            state::MIN_DEAD_INTERVALS,
                            format_duration(interval),
                            format_duration(least),
                        ),
                    ));
                }
                dead_after
            }
            None => interval * state::DEFAULT_DEAD_INTERVALS,
        };
        let preempt_delay = duration(
            &raw.preempt_delay,
            "preempt_delay",
            Duration::ZERO..=MAX_CHECK_DURATION,
            Duration::ZERO,
        )?;
        let tie_breaker = match &raw.tie_breaker {
            Some(address) => Some(self.address(address, "cluster.tie_breaker")?),
            None => None,
        };
        let fence_command = match &raw.fence_command {
            Some(command) => Some(self.command(command, "cluster.fence_command")?),
            None => None,
        };
        let fence_timeout = duration(
            &raw.fence_timeout,
            "fence_timeout",
            MIN_CHECK_DURATION..=MAX_CHECK_DURATION,
            DEFAULT_FENCE_TIMEOUT,
        )?;
        // A node's own announcement settings, unless the cluster's differ.
        let (announce_count, announce_interval) = self.announce(
            raw.announce_count.as_ref(),
            raw.announce_interval.as_ref(),
            "cluster",
            (node.announce_count, node.announce_interval),
        )?;
        let mut hooks = [None, None, None];
        for ((raw, name), out) in [
            (&raw.on_owner, "on_owner"),
            (&raw.on_standby, "on_standby"),
            (&raw.on_fault, "on_fault"),
        ]
        .into_iter()
        .zip(&mut hooks)
        {
            if let Some(command) = raw {
                *out = Some(self.command(command, &format!("cluster.{name}"))?);
            }
        }
        let [on_owner, on_standby, on_fault] = hooks;
        let hook_timeout = duration(
            &raw.hook_timeout,
            "hook_timeout",
            MIN_CHECK_DURATION..=MAX_CHECK_DURATION,
            DEFAULT_HOOK_TIMEOUT,
        )?;

        // The nodes.
        if raw.node.is_empty() {
            return Err(self.at(
                spanned,
                "cluster.node",
                "a cluster needs a [[cluster.node]] for every node, this one included",
            ));
        }
        let mut nodes: Vec<ClusterNode> = Vec::with_capacity(raw.node.len());
        for (i, raw_node) in raw.node.iter().enumerate() {
            let path = format!("cluster.node[{i}]");
            if i >= state::MAX_NODES {
                return Err(self.at(
                    raw_node,
                    path,
                    format!("at most {} nodes are supported", state::MAX_NODES),
                ));
            }
            let raw_node = raw_node.get_ref();
            let name = raw_node.name.get_ref();
            check_node_name(name)
                .map_err(|m| self.at(&raw_node.name, format!("{path}.name"), m))?;
            let address_field = format!("{path}.address");
            let address = self.address(&raw_node.address, &address_field)?;
            if let Some(first) = nodes.iter().position(|n| n.name == *name) {
                return Err(self.at(
                    &raw_node.name,
                    format!("{path}.name"),
                    format!("duplicate node name `{name}` (also cluster.node[{first}])"),
                ));
            }
            if let Some(first) = nodes.iter().position(|n| n.address == address) {
                return Err(self.at(
                    &raw_node.address,
                    address_field,
                    format!("duplicate node address {address} (also cluster.node[{first}])"),
                ));
            }
            if let Some((v, vip)) = vips.iter().enumerate().find(|(_, v)| v.address == address) {
                return Err(self.at(
                    &raw_node.address,
                    address_field,
                    format!(
                        "{address} is the address of vip[{v}] `{}`; heartbeats go to a node's own address",
                        vip.name
                    ),
                ));
            }
            nodes.push(ClusterNode {
                name: name.clone(),
                address,
            });
        }
        if !nodes.iter().any(|n| n.name == node.name) {
            return Err(self.at(
                spanned,
                "cluster.node",
                format!(
                    "this node `{}` (node.name) is not one of the cluster's nodes; list every node, this one included",
                    node.name
                ),
            ));
        }

        // What depends on the number of nodes.
        let quorum = raw
            .quorum
            .as_ref()
            .map_or(QuorumConfig::Majority, |q| *q.get_ref());
        match (quorum, &raw.quorum) {
            (QuorumConfig::TwoNode, Some(written)) if nodes.len() != 2 => {
                return Err(self.at(
                    written,
                    "cluster.quorum",
                    format!(
                        "quorum = \"two_node\" needs exactly 2 nodes; this cluster has {} (use \"majority\")",
                        nodes.len()
                    ),
                ));
            }
            (QuorumConfig::Majority, written) if nodes.len() == 2 => {
                let message = "a majority of 2 nodes is both of them, so either one failing would stop the other; set quorum = \"two_node\" (optionally with a tie_breaker)";
                return Err(match written {
                    Some(written) => self.at(written, "cluster.quorum", message),
                    None => self.at(spanned, "cluster.quorum", message),
                });
            }
            _ => {}
        }
        if let (Some(address), Some(written)) = (tie_breaker, &raw.tie_breaker) {
            if quorum != QuorumConfig::TwoNode {
                let of = if raw.quorum.is_some() {
                    " (cluster.quorum)"
                } else {
                    " (the default)"
                };
                return Err(self.at(
                    written,
                    "cluster.tie_breaker",
                    format!(
                        "only applies to quorum = \"two_node\"; this cluster's quorum is {}{of}",
                        quorum.name()
                    ),
                ));
            }
            if let Some(i) = nodes.iter().position(|n| n.address == address) {
                return Err(self.at(
                    written,
                    "cluster.tie_breaker",
                    format!(
                        "{address} is the address of cluster.node[{i}]; the tie-breaker must be a third party (e.g. the default gateway)"
                    ),
                ));
            }
            if let Some((v, _)) = vips.iter().enumerate().find(|(_, v)| v.address == address) {
                return Err(self.at(
                    written,
                    "cluster.tie_breaker",
                    format!(
                        "{address} is the address of vip[{v}]; the tie-breaker must be a third party (e.g. the default gateway)"
                    ),
                ));
            }
        }

        // Fencing.
        let fencing = raw
            .fencing
            .as_ref()
            .map_or(FencingConfig::None, |f| *f.get_ref());
        match (fencing, &raw.fencing) {
            (FencingConfig::Required, Some(written)) if fence_command.is_none() => {
                return Err(self.at(
                    written,
                    "cluster.fencing",
                    "fencing = \"required\" needs `fence_command`, e.g. fence_command = [\"/usr/local/sbin/fence-node\"]",
                ));
            }
            (FencingConfig::None, written) => {
                let of = if written.is_some() {
                    " (cluster.fencing)"
                } else {
                    " (the default)"
                };
                let fence_fields = [
                    (
                        "fence_command",
                        raw.fence_command.as_ref().map(|c| c.span().start),
                    ),
                    (
                        "fence_timeout",
                        raw.fence_timeout.as_ref().map(|t| t.span().start),
                    ),
                ];
                if let Some((name, Some(offset))) =
                    fence_fields.into_iter().find(|(_, o)| o.is_some())
                {
                    return Err(self.error(
                        offset,
                        format!("cluster.{name}"),
                        format!(
                            "`{name}` only applies with fencing = \"required\"; fencing is none{of}"
                        ),
                    ));
                }
            }
            _ => {}
        }

        Ok(ClusterConfig {
            id: *raw.id.get_ref(),
            key_file: PathBuf::from(key_file),
            port,
            interval,
            dead_after,
            priority: raw.priority.unwrap_or(DEFAULT_PRIORITY),
            preempt: raw.preempt.unwrap_or(true),
            preempt_delay,
            quorum,
            tie_breaker,
            fencing,
            fence_command,
            fence_timeout,
            announce_count,
            announce_interval,
            on_owner,
            on_standby,
            on_fault,
            hook_timeout,
            nodes,
            tracks: self.tracks(&raw.track)?,
        })
    }

    /// `[[cluster.track]]`: each a check with its own address; the check
    /// table takes no defaults from `[health]` (a local service is not a
    /// backend) and needs a `type` and, but for exec, a `port`.
    fn tracks(&self, raw: &[RawTrack]) -> Result<Vec<TrackConfig>, ConfigError> {
        let mut tracks = Vec::new();
        for (i, track) in raw.iter().enumerate() {
            let path = format!("cluster.track[{i}]");
            let address = track.address.get_ref().parse::<IpAddr>().map_err(|_| {
                self.at(
                    &track.address,
                    format!("{path}.address"),
                    format!(
                        "`{}` is not an IPv4 or IPv6 address",
                        track.address.get_ref()
                    ),
                )
            })?;
            let fields = self.check_fields(&track.check, &format!("{path}.check"))?;
            let check = self.check(CheckFields::default().merged(fields), 0, &path)?;
            let kind = match &track.check.kind {
                Some(kind) => kind,
                None => {
                    return Err(self.at(
                        &track.address,
                        format!("{path}.check.type"),
                        "a track check needs a type",
                    ));
                }
            };
            match check.kind {
                CheckKind::None => {
                    return Err(self.at(kind, format!("{path}.check.type"), "must not be none"));
                }
                CheckKind::Exec { .. } => {}
                _ if check.port == 0 => {
                    return Err(self.at(
                        kind,
                        format!("{path}.check.port"),
                        "a track check needs a port",
                    ));
                }
                _ => {}
            }
            tracks.push(TrackConfig { address, check });
        }
        Ok(tracks)
    }
}
