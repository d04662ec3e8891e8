//! What `hactl maps` shows: the pinned maps, read without the agent,
//! turned into plain records and rendered as aligned tables for people or
//! JSON for scripts. (What the agent reports about itself, `hactl status`
//! and metrics, is built in `agent::status`.)

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv6Addr},
    path::Path,
};

use anyhow::Result;
use ha_common::{
    Addr, BACKEND_F_DRAINING, BACKEND_F_HEALTHY, GlobalCounter, VIP_F_NO_BACKEND_PASS,
    backend_stats_index, vip_stats_index,
};
use serde::Serialize;

use crate::{
    datapath::{Maps, monotonic_coarse_ns, monotonic_ns, pinned_link},
    model::Mac,
};

#[cfg(test)]
mod tests;

/// The datapath as its pinned maps hold it.
#[derive(Serialize)]
pub struct MapsView {
    /// The attached program, when its link is pinned beside the maps.
    pub program: Option<ProgramRow>,
    pub vips: Vec<VipRow>,
    pub backends: Vec<BackendRow>,
    pub flow_count: usize,
    pub flows: Vec<FlowRow>,
    pub counters: Vec<CounterRow>,
}

/// Which build of the program forwards (an upgrade changes id and tag).
#[derive(Serialize)]
pub struct ProgramRow {
    pub link_id: u32,
    pub program_id: u32,
    /// The kernel's tag of the program's instructions, hex.
    pub tag: String,
}

#[derive(Serialize)]
pub struct VipRow {
    pub id: u32,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub ring_gen: u32,
    pub flags: Vec<&'static str>,
    /// Milliseconds left on this node's ARP/NDP lease; None: not owned.
    pub lease_ms: Option<u64>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct BackendRow {
    pub id: u32,
    /// The VIP (its id) this backend serves.
    pub vip: u32,
    pub address: IpAddr,
    pub mac: String,
    pub flags: Vec<&'static str>,
    pub weight: u32,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct FlowRow {
    pub source: String,
    pub destination: String,
    pub protocol: String,
    pub backend: u32,
    /// Time since the flow was placed (TCP) or last seen, to a second (UDP).
    pub age_ms: u64,
}

#[derive(Serialize)]
pub struct CounterRow {
    pub name: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// The display form of a stored address (IPv4-mapped shown as IPv4).
pub fn ip(addr: &Addr) -> IpAddr {
    let v6 = Ipv6Addr::from(*addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn protocol(number: u8) -> String {
    match number {
        ha_common::PROTO_TCP => "tcp".into(),
        ha_common::PROTO_UDP => "udp".into(),
        other => other.to_string(),
    }
}

fn endpoint(addr: &Addr, port_be: u16) -> String {
    match ip(addr) {
        IpAddr::V4(v4) => format!("{v4}:{}", u16::from_be(port_be)),
        IpAddr::V6(v6) => format!("[{v6}]:{}", u16::from_be(port_be)),
    }
}

impl MapsView {
    /// The maps pinned in `dir`, and the program on the link pinned there.
    pub fn read(dir: &Path, flow_limit: usize) -> Result<MapsView> {
        let maps = Maps::open_pinned(dir)?;
        let program = pinned_link(dir).ok().map(|(link_id, p)| ProgramRow {
            link_id,
            program_id: p.id,
            tag: format!("{:016x}", p.tag),
        });
        let counters = maps.counters()?;
        let now = monotonic_ns();
        let owned = maps.owned()?;
        let vips = maps
            .vips()?
            .into_iter()
            .map(|(key, value)| {
                let c = counters[vip_stats_index(value.vip_id) as usize];
                let lease_ms = owned
                    .iter()
                    .find(|(a, _)| *a == key.addr)
                    .and_then(|(_, l)| l.deadline_ns.checked_sub(now))
                    .map(|ns| ns / 1_000_000);
                let mut flags = Vec::new();
                if value.flags & VIP_F_NO_BACKEND_PASS != 0 {
                    flags.push("no-backend-pass");
                }
                VipRow {
                    id: value.vip_id,
                    address: ip(&key.addr),
                    port: u16::from_be(key.port_be),
                    protocol: protocol(key.proto),
                    ring_gen: value.ring_gen,
                    flags,
                    lease_ms,
                    packets: c.packets,
                    bytes: c.bytes,
                }
            })
            .collect();
        let backends = maps
            .backends()?
            .into_iter()
            .map(|(id, b)| {
                let c = counters[backend_stats_index(id) as usize];
                let mut flags = Vec::new();
                if b.flags & BACKEND_F_HEALTHY != 0 {
                    flags.push("healthy");
                }
                if b.flags & BACKEND_F_DRAINING != 0 {
                    flags.push("draining");
                }
                BackendRow {
                    id,
                    vip: b.vip_id,
                    address: ip(&b.addr),
                    mac: Mac(b.mac).to_string(),
                    flags,
                    weight: b.weight,
                    packets: c.packets,
                    bytes: c.bytes,
                }
            })
            .collect();
        let (flow_count, sample) = maps.flows(flow_limit)?;
        let now_coarse = monotonic_coarse_ns();
        let flows = sample
            .into_iter()
            .map(|(k, v)| FlowRow {
                source: endpoint(&k.src, k.sport_be),
                destination: endpoint(&k.dst, k.dport_be),
                protocol: protocol(k.proto),
                backend: v.backend_id,
                age_ms: now_coarse.saturating_sub(v.seen_ns) / 1_000_000,
            })
            .collect();
        let counters = GlobalCounter::ALL
            .iter()
            .map(|c| CounterRow {
                name: c.name(),
                packets: counters[*c as usize].packets,
                bytes: counters[*c as usize].bytes,
            })
            .collect();
        Ok(MapsView {
            program,
            vips,
            backends,
            flow_count,
            flows,
            counters,
        })
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(p) = &self.program {
            let _ = writeln!(
                out,
                "program id {} tag {} on link {}\n",
                p.program_id, p.tag, p.link_id
            );
        }
        let vips: Vec<Vec<String>> = self
            .vips
            .iter()
            .map(|v| {
                vec![
                    v.id.to_string(),
                    v.address.to_string(),
                    v.port.to_string(),
                    v.protocol.clone(),
                    v.ring_gen.to_string(),
                    v.lease_ms.map_or("-".into(), |ms| format!("{ms}ms")),
                    join(&v.flags),
                    v.packets.to_string(),
                    v.bytes.to_string(),
                ]
            })
            .collect();
        section(
            &mut out,
            "VIPs",
            &[
                "ID", "ADDRESS", "PORT", "PROTO", "GEN", "LEASE", "FLAGS", "PACKETS", "BYTES",
            ],
            &vips,
        );
        let backends: Vec<Vec<String>> = self
            .backends
            .iter()
            .map(|b| {
                vec![
                    b.id.to_string(),
                    b.vip.to_string(),
                    b.address.to_string(),
                    b.mac.clone(),
                    join(&b.flags),
                    b.weight.to_string(),
                    b.packets.to_string(),
                    b.bytes.to_string(),
                ]
            })
            .collect();
        section(
            &mut out,
            "Backends",
            &[
                "ID", "VIP", "ADDRESS", "MAC", "FLAGS", "WEIGHT", "PACKETS", "BYTES",
            ],
            &backends,
        );
        let flows: Vec<Vec<String>> = self
            .flows
            .iter()
            .map(|f| {
                vec![
                    f.source.clone(),
                    f.destination.clone(),
                    f.protocol.clone(),
                    f.backend.to_string(),
                    format!("{}ms", f.age_ms),
                ]
            })
            .collect();
        let title = format!(
            "Flows ({} in table, first {} shown)",
            self.flow_count,
            self.flows.len()
        );
        section(
            &mut out,
            &title,
            &["SOURCE", "DESTINATION", "PROTO", "BACKEND", "AGE"],
            &flows,
        );
        let counters: Vec<Vec<String>> = self
            .counters
            .iter()
            .map(|c| {
                vec![
                    c.name.to_string(),
                    c.packets.to_string(),
                    c.bytes.to_string(),
                ]
            })
            .collect();
        section(
            &mut out,
            "Counters",
            &["COUNTER", "PACKETS", "BYTES"],
            &counters,
        );
        out
    }
}

fn join(flags: &[&str]) -> String {
    if flags.is_empty() {
        "-".into()
    } else {
        flags.join(",")
    }
}

fn section(out: &mut String, title: &str, headers: &[&str], rows: &[Vec<String>]) {
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{title}");
    out.push_str(&table(headers, rows));
}

/// Left-aligned columns, two spaces apart, padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}
