//! `cargo xtask bench switchover`: from a backend's health decision to the
//! datapath, through the agent's own two-phase code (ha_agent::writer),
//! for 2, 10, 100 and 1000 backends behind one VIP with M = 65537.
//! Baseline in the same run: writing the same ring one bpf() syscall per
//! slot instead of through the mmap.

use std::{collections::HashMap, net::IpAddr, path::Path, time::Duration, time::Instant};

use anyhow::{Context, Result};
use ha_agent::{
    config::{self, Config},
    datapath::{Datapath, LoadOptions},
    desired::Knowledge,
    model::{BackendKey, Mac},
    writer::{Timings, Writer},
};
use ha_common::DEFAULT_RING_SIZE;

use crate::{percentile, record};

const BACKEND_COUNTS: [usize; 4] = [2, 10, 100, 1000];
/// Health changes per backend count: every backend goes down and comes back.
const CHANGES: usize = 200;

/// Backend `i`'s address: 198.18.(i / 250).(i % 250 + 1), all in 198.18.0.0/15.
fn backend_address(i: usize) -> IpAddr {
    IpAddr::from([198, 18, (i / 250) as u8, (i % 250 + 1) as u8])
}

fn config(backends: usize) -> Result<Config> {
    let list: String = (0..backends)
        .map(|i| {
            format!(
                "  [[vip.backend]]\n  address = \"{}\"\n",
                backend_address(i)
            )
        })
        .collect();
    let text = format!(
        "[node]\nname = \"bench\"\ninterface = \"lo\"\n\n[datapath]\nring_size = {DEFAULT_RING_SIZE}\n\n\
         [[vip]]\naddress = \"198.18.100.1\"\nport = 80\nprotocol = \"tcp\"\n{list}"
    );
    Ok(config::parse(Path::new("bench.toml"), &text)?)
}

struct Row {
    backends: usize,
    phase1: Vec<Duration>,
    compute: Vec<Duration>,
    write: Vec<Duration>,
    phase2: Vec<Duration>,
}

pub(crate) fn run() -> Result<()> {
    let mut rows = Vec::new();
    let mut syscall_ring = Duration::ZERO;
    for backends in BACKEND_COUNTS {
        let config = config(backends)?;
        let datapath = Datapath::load(&LoadOptions {
            ring_size: config.datapath.ring_size,
            max_flows: config.datapath.max_flows,
            node_mac: [2, 0xaa, 0, 0, 0, 1],
            pin_dir: None,
            object: None,
        })
        .context("load the XDP program (root needed)")?;
        let mut knowledge = Knowledge {
            macs: (0..backends)
                .map(|i| {
                    (
                        backend_address(i),
                        Mac([2, 0xbb, 0, 0, (i >> 8) as u8, i as u8]),
                    )
                })
                .collect::<HashMap<_, _>>(),
            ..Knowledge::default()
        };
        let mut writer = Writer::adopt(datapath, &config)?;
        writer.reconcile(&config, &knowledge)?;

        let mut row = Row {
            backends,
            phase1: Vec::new(),
            compute: Vec::new(),
            write: Vec::new(),
            phase2: Vec::new(),
        };
        for change in 0..CHANGES {
            // Backend k goes down, then comes back on the next change.
            let key = BackendKey {
                vip: 0,
                backend: (change / 2) % backends,
            };
            if change % 2 == 0 {
                knowledge.down.insert(key);
            } else {
                knowledge.down.remove(&key);
            }
            let decided = Instant::now();
            let (
                _,
                Timings {
                    phase1,
                    compute,
                    write,
                    phase2,
                },
            ) = writer.switch_backend(&config, &knowledge, key, decided)?;
            row.phase1.push(phase1);
            row.compute.push(compute);
            row.write.push(write);
            row.phase2.push(phase2);
        }
        if backends == BACKEND_COUNTS[0] {
            syscall_ring = writer.datapath.time_ring_by_syscalls(1)?;
        }
        rows.push(row);
    }
    let report = render(&mut rows, syscall_ring);
    print!("{report}");
    record("switchover", &report)
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn render(rows: &mut [Row], syscall_ring: Duration) -> String {
    let mut out = format!(
        "Microseconds from a backend's health decision to the datapath, through the agent's \
         two-phase code, one VIP, M = {DEFAULT_RING_SIZE}, {CHANGES} changes per row (each \
         backend in turn down, then up), p50 / p99. Phase 1: the BACKENDS entry written \
         (flows move by re-probe from here on). Phase 2: Maglev table computed, written into \
         the inactive generation through the mmap'ed ring, generation flipped.\n\n\
         | backends | phase 1 | table compute | ring write + flip | phase 2 (decision to flip) |\n\
         |---:|---:|---:|---:|---:|\n"
    );
    for row in rows.iter_mut() {
        let cell = |samples: &mut Vec<Duration>| {
            format!(
                "{} / {}",
                us(percentile(samples, 50.0)),
                us(percentile(samples, 99.0))
            )
        };
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            row.backends,
            cell(&mut row.phase1),
            cell(&mut row.compute),
            cell(&mut row.write),
            cell(&mut row.phase2),
        );
    }
    let mut writes: Vec<Duration> = rows.iter().flat_map(|r| r.write.iter().copied()).collect();
    let mmap = percentile(&mut writes, 50.0);
    out += &format!(
        "\nBaseline, same run: writing one ring of {DEFAULT_RING_SIZE} slots with one bpf() \
         syscall per slot took {} us; through the mmap (with the flip) {} us at p50, {:.0}x \
         faster.\n",
        us(syscall_ring),
        us(mmap),
        syscall_ring.as_secs_f64() / mmap.as_secs_f64().max(1e-9)
    );
    out
}
