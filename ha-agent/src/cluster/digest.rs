//! The digest of the configuration a cluster's nodes must share.
//!
//! Why this exists: every node has its own file, and nodes that disagree on
//! the VIPs, backends or members would elect owners for different things.
//! Heartbeats carry this digest; a node whose digest differs from its
//! peers' takes no VIP (see `state`).

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{CheckConfig, ClusterNode, Config, NoBackend};
use crate::model::Protocol;

/// Version of the encoding [`digest`] hashes; bump it when the encoding
/// changes, so that nodes of different versions see that they differ.
const DIGEST_ENCODING: u32 = 1;

/// SHA-256 of what every node of a cluster must agree on: the VIPs (name,
/// address, port, protocol, group, `on_no_backend`, check) with their
/// backends (address, weight), the groups in order, the ring size, and the
/// cluster's id and nodes. Node-local settings ([node], `pin_dir`,
/// `max_flows`, priority, key file, hooks, timing) are left out, so two
/// nodes' files that differ only there have the same digest. Heartbeats
/// carry it; nodes whose digests differ take no VIP.
///
/// The encoding is the JSON of a dedicated struct whose fields are in a
/// fixed order; VIPs are sorted by name, backends by address (the Maglev
/// table does not depend on their order) and nodes by name. The groups
/// keep their order: heartbeats name groups by their index.
pub(crate) fn digest(config: &Config) -> [u8; 32] {
    #[derive(Serialize)]
    struct Shared<'a> {
        encoding: u32,
        ring_size: u32,
        groups: &'a [String],
        vips: Vec<SharedVip<'a>>,
        cluster: Option<SharedCluster<'a>>,
    }
    #[derive(Serialize)]
    struct SharedVip<'a> {
        name: &'a str,
        address: IpAddr,
        port: u16,
        protocol: Protocol,
        group: &'a str,
        on_no_backend: NoBackend,
        check: &'a CheckConfig,
        backends: Vec<SharedBackend>,
    }
    #[derive(Serialize)]
    struct SharedBackend {
        address: IpAddr,
        weight: u32,
    }
    #[derive(Serialize)]
    struct SharedCluster<'a> {
        id: u64,
        nodes: Vec<&'a ClusterNode>,
    }

    let mut vips: Vec<SharedVip<'_>> = config
        .vips
        .iter()
        .map(|vip| {
            let mut backends: Vec<SharedBackend> = vip
                .backends
                .iter()
                .map(|b| SharedBackend {
                    address: b.address,
                    weight: b.weight,
                })
                .collect();
            backends.sort_by_key(|b| b.address);
            SharedVip {
                name: &vip.name,
                address: vip.address,
                port: vip.port,
                protocol: vip.protocol,
                group: &config.groups[vip.group],
                on_no_backend: vip.on_no_backend,
                check: &vip.check,
                backends,
            }
        })
        .collect();
    vips.sort_by(|a, b| a.name.cmp(b.name));
    let cluster = config.cluster.as_ref().map(|cluster| {
        let mut nodes: Vec<&ClusterNode> = cluster.nodes.iter().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        SharedCluster {
            id: cluster.id,
            nodes,
        }
    });
    let shared = Shared {
        encoding: DIGEST_ENCODING,
        ring_size: config.datapath.ring_size,
        groups: &config.groups,
        vips,
        cluster,
    };
    let encoded = serde_json::to_vec(&shared).expect("the digest's input serializes to JSON");
    Sha256::digest(encoded).into()
}

#[cfg(test)]
mod tests;
