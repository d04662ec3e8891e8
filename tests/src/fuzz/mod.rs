//! Packet fuzzing of the real XDP program: seeded frames (generate),
//! judged by an independent model of what a correct program may do with
//! each (check), run through BPF_PROG_TEST_RUN on the program loaded with
//! real maps filled from the fuzz topology below. A failure names its seed
//! and case and the command that replays it.

mod check;
mod generate;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_agent::{datapath::Datapath, model::Mac};

pub use check::{Failure, KnownDefect, check};

use crate::{
    packet::{TCP, UDP},
    test_run::{self, VIP4, VIP6, XDP_DROP, XDP_PASS, XDP_TX},
};

/// An IPv4 VIP that is not owned and has no usable backend (its only
/// backend has no MAC): the documented drop path.
pub const VIP4_DROP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 101);
/// An IPv4 VIP without usable backend whose packets go to the local stack.
pub const VIP4_PASS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 102);
/// An IPv6 VIP that is not owned and has no usable backend: drop.
pub const VIP6_DROP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x101);

/// A backend as the fuzz config declares it.
#[derive(Clone, Debug)]
pub struct BackendSpec {
    pub address: IpAddr,
    /// Configured MAC; None: unknown, so the backend is never usable.
    pub mac: Option<[u8; 6]>,
    /// 0 drains the backend: it takes no new flow.
    pub weight: u32,
}

/// A VIP as the fuzz config declares it.
#[derive(Clone, Debug)]
pub struct VipSpec {
    pub address: IpAddr,
    pub port: u16,
    /// TCP or UDP (IP protocol number).
    pub protocol: u8,
    /// One group per address: ARP/NDP ownership is per address.
    pub group: &'static str,
    /// on_no_backend = "pass" (else "drop").
    pub pass_without_backend: bool,
    pub backends: Vec<BackendSpec>,
}

/// The VIPs, backends and owned addresses every fuzz run uses: owned and
/// not owned VIPs of both families and protocols, a drained backend, and
/// VIPs without a usable backend for both `on_no_backend` settings.
#[derive(Clone, Debug)]
pub struct Topology {
    pub vips: Vec<VipSpec>,
    /// Addresses this node holds a lease on: it answers ARP/NDP for them.
    pub owned: Vec<IpAddr>,
}

fn backend(address: IpAddr, mac_last: Option<u8>, weight: u32) -> BackendSpec {
    BackendSpec {
        address,
        mac: mac_last.map(|last| [0x02, 0xbb, 0, 0, 0, last]),
        weight,
    }
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, last))
}

impl Topology {
    pub fn standard() -> Topology {
        let vip = |address: IpAddr,
                   port: u16,
                   protocol: u8,
                   group: &'static str,
                   backends: Vec<BackendSpec>| VipSpec {
            address,
            port,
            protocol,
            group,
            pass_without_backend: false,
            backends,
        };
        let mut vips = vec![
            vip(
                VIP4.into(),
                80,
                TCP,
                "four",
                vec![
                    backend(v4(21), Some(1), 1),
                    backend(v4(22), Some(2), 2),
                    backend(v4(23), Some(3), 0),
                ],
            ),
            vip(
                VIP4.into(),
                53,
                UDP,
                "four",
                vec![backend(v4(24), Some(4), 1)],
            ),
            vip(
                VIP4_DROP.into(),
                443,
                TCP,
                "four-drop",
                vec![backend(v4(25), None, 1)],
            ),
            vip(
                VIP4_PASS.into(),
                8080,
                UDP,
                "four-pass",
                vec![backend(v4(26), None, 1)],
            ),
            vip(
                VIP6.into(),
                80,
                TCP,
                "six",
                vec![backend(v6(0x21), Some(5), 1), backend(v6(0x22), Some(6), 1)],
            ),
            vip(
                VIP6.into(),
                53,
                UDP,
                "six",
                vec![backend(v6(0x23), Some(7), 1)],
            ),
            vip(
                VIP6_DROP.into(),
                443,
                TCP,
                "six-drop",
                vec![backend(v6(0x25), None, 1)],
            ),
        ];
        vips[3].pass_without_backend = true;
        Topology {
            vips,
            owned: vec![VIP4.into(), VIP6.into()],
        }
    }

    /// The config file that declares this topology.
    pub fn config_text(&self) -> String {
        let mut text = String::from(
            "[node]\nname = \"fuzz\"\ninterface = \"lo\"\n\n\
             [datapath]\nring_size = 251\nmax_flows = 4096\n",
        );
        for vip in &self.vips {
            let protocol = if vip.protocol == TCP { "tcp" } else { "udp" };
            let _ = write!(
                text,
                "\n[[vip]]\naddress = \"{}\"\nport = {}\nprotocol = \"{protocol}\"\ngroup = \"{}\"\n",
                vip.address, vip.port, vip.group
            );
            if vip.pass_without_backend {
                text.push_str("on_no_backend = \"pass\"\n");
            }
            for backend in &vip.backends {
                let _ = write!(
                    text,
                    "  [[vip.backend]]\n  address = \"{}\"\n",
                    backend.address
                );
                if let Some(mac) = backend.mac {
                    let _ = writeln!(text, "  mac = \"{}\"", Mac(mac));
                }
                let _ = writeln!(text, "  weight = {}", backend.weight);
            }
        }
        text
    }

    /// The VIP of this destination, if one is configured.
    pub fn vip(&self, address: IpAddr, port: u16, protocol: u8) -> Option<&VipSpec> {
        self.vips
            .iter()
            .find(|v| v.address == address && v.port == port && v.protocol == protocol)
    }

    /// MACs of the backends of `vip` that may take a flow: MAC known,
    /// weight above 0 (a drained backend keeps only flows it already has,
    /// and none is ever placed on one here).
    pub fn usable_macs(vip: &VipSpec) -> impl Iterator<Item = [u8; 6]> + '_ {
        vip.backends
            .iter()
            .filter(|b| b.weight > 0)
            .filter_map(|b| b.mac)
    }

    pub fn owns(&self, address: IpAddr) -> bool {
        self.owned.contains(&address)
    }

    /// The program loaded with fresh maps holding this topology.
    pub fn load(&self) -> Result<Datapath> {
        Ok(
            test_run::load(&self.config_text(), HashMap::new(), &self.owned)
                .context("load the program with the fuzz topology")?
                .datapath,
        )
    }
}

/// Bytes as lowercase hex, two digits each, no separator.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One frame that got a verdict the checker rejects.
#[derive(Clone, Debug)]
pub struct Case {
    pub seed: u64,
    pub index: u64,
    pub frame: Vec<u8>,
    pub verdict: u32,
    pub output: Vec<u8>,
    /// Why it is wrong (a known defect too); None for a right case shown
    /// on request (replay).
    pub failure: Option<Failure>,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Some(failure) => writeln!(f, "fuzz failure: {failure}")?,
            None => writeln!(f, "fuzz case: right")?,
        }
        writeln!(f, "  seed {} case {}", self.seed, self.index)?;
        writeln!(
            f,
            "  frame ({} bytes): {}",
            self.frame.len(),
            hex(&self.frame)
        )?;
        writeln!(
            f,
            "  verdict: {} ({})",
            verdict_name(self.verdict),
            self.verdict
        )?;
        writeln!(
            f,
            "  output ({} bytes): {}",
            self.output.len(),
            hex(&self.output)
        )?;
        write!(
            f,
            "  replay: HA_FUZZ_SEED={} HA_FUZZ_CASE={} cargo nextest run -p ha-tests --test fuzz --no-capture",
            self.seed, self.index
        )
    }
}

pub fn verdict_name(verdict: u32) -> &'static str {
    match verdict {
        0 => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "unknown",
    }
}

/// What one seed's run saw.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub frames: u64,
    /// Frames per verdict.
    pub verdicts: BTreeMap<u32, u64>,
    /// Failures skipped as known defects: how many, and the first case.
    pub known: BTreeMap<KnownDefect, (u64, u64)>,
    pub failures: Vec<Case>,
    /// The case asked for by HA_FUZZ_CASE, whatever its outcome.
    pub shown: Option<Case>,
    pub wall: Duration,
    /// Of `wall`, the time spent in BPF_PROG_TEST_RUN calls.
    pub in_program: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_second = self.frames as f64 / self.wall.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "fuzz seed {}: {} frames in {:.2?} ({per_second:.0} frames/s; {:.2?} in BPF_PROG_TEST_RUN)",
            self.seed, self.frames, self.wall, self.in_program
        )?;
        let verdicts: Vec<String> = self
            .verdicts
            .iter()
            .map(|(v, n)| format!("{} {n}", verdict_name(*v)))
            .collect();
        writeln!(f, "  verdicts: {}", verdicts.join(", "))?;
        for (defect, (count, first)) in &self.known {
            writeln!(
                f,
                "  known defect skipped {count} times (first case {first}): {}",
                defect.describe()
            )?;
        }
        write!(f, "  failures: {}", self.failures.len())
    }
}

/// Runs cases 0..`frames` of `seed` through a freshly loaded program, in
/// order (the flow table carries state from one case to the next, so a
/// replay runs every case before the one it shows). Failures whose defect
/// is in `allowed` are counted, not reported; at most `keep` failures are
/// kept in full.
pub fn run(
    seed: u64,
    frames: u64,
    allowed: &[KnownDefect],
    show: Option<u64>,
    keep: usize,
) -> Result<Report> {
    let topology = Topology::standard();
    let mut datapath = topology.load()?;
    let mut report = Report {
        seed,
        frames,
        verdicts: BTreeMap::new(),
        known: BTreeMap::new(),
        failures: Vec::new(),
        shown: None,
        wall: Duration::ZERO,
        in_program: Duration::ZERO,
    };
    let started = Instant::now();
    for index in 0..frames {
        let frame = generate::case(&topology, seed, index);
        let before = Instant::now();
        let (verdict, output) = datapath
            .test_run(&frame)
            .with_context(|| format!("BPF_PROG_TEST_RUN of seed {seed} case {index}"))?;
        report.in_program += before.elapsed();
        *report.verdicts.entry(verdict).or_default() += 1;
        let judged = check(&topology, &frame, verdict, &output).err();
        let failure = match &judged {
            Some(failure) => match failure.defect {
                Some(defect) if allowed.contains(&defect) => {
                    report.known.entry(defect).or_insert((0, index)).0 += 1;
                    None
                }
                _ => Some(failure.clone()),
            },
            None => None,
        };
        let shown = show == Some(index);
        if failure.is_none() && !shown {
            continue;
        }
        let case = Case {
            seed,
            index,
            frame,
            verdict,
            output,
            failure: judged,
        };
        if failure.is_some() {
            report.failures.push(if report.failures.len() < keep {
                case.clone()
            } else {
                // Counted, not kept in full.
                Case {
                    frame: Vec::new(),
                    output: Vec::new(),
                    ..case.clone()
                }
            });
        }
        if shown {
            report.shown = Some(case);
        }
    }
    report.wall = started.elapsed();
    Ok(report)
}
