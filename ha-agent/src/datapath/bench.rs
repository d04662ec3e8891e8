//! Measurement and lab support, compiled only with the `bench` feature
//! (ha-bench and the tests crate enable it; the daemon is built without):
//! timing the program by BPF_PROG_TEST_RUN, timing a ring written by
//! syscalls as the baseline of the mmap'ed writes, and the trivial
//! XDP_PASS program. A child of `datapath` because it needs the program,
//! the RINGS map and the embedded object, which stay private there.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData},
    programs::{TestRun, TestRunOptions, Xdp, XdpMode},
};
use ha_common::{map, ring_index};

use super::{Datapath, XDP_OBJECT, raise_memlock_limit};

/// Name of the trivial XDP_PASS program in the XDP object.
const PASS_PROGRAM_NAME: &str = "ha_pass";

impl Datapath {
    /// Average time per run over `repeat` runs of `frame`, as the kernel
    /// measured it. With repeat > 1 later runs see the first run's output.
    pub fn time_run(&mut self, frame: &[u8], repeat: u32) -> Result<Duration> {
        time_program(self.program()?, frame, repeat)
    }

    /// The switchover benchmark's baseline: writes generation 1 of
    /// `vip_id`'s ring with one bpf() syscall per slot, as a writer without
    /// the mmap would, and returns how long that took.
    pub fn time_ring_by_syscalls(&mut self, vip_id: u32) -> Result<Duration> {
        let table = self.read_ring(vip_id, 0);
        let first = ring_index(vip_id, 1, self.ring_size, 0);
        let mut rings: Array<&mut MapData, u32> = Array::try_from(&mut self.rings.map)?;
        let started = Instant::now();
        for (i, backend_id) in table.iter().enumerate() {
            rings.set(first + i as u32, backend_id, 0)?;
        }
        Ok(started.elapsed())
    }
}

/// A loaded trivial XDP_PASS program: the lab attaches it to the peer of
/// every veth that transmits XDP_TX frames, and benchmarks use it as the
/// baseline cost of running any XDP program at all.
pub struct PassProgram {
    ebpf: Ebpf,
}

impl PassProgram {
    pub fn load() -> Result<PassProgram> {
        raise_memlock_limit();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(map::RINGS, 1)
            .load(XDP_OBJECT)
            .context("load the XDP object")?;
        let program: &mut Xdp = ebpf
            .program_mut(PASS_PROGRAM_NAME)
            .context("pass program missing from the object")?
            .try_into()?;
        program.load()?;
        Ok(PassProgram { ebpf })
    }

    fn program(&mut self) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(PASS_PROGRAM_NAME)
            .context("pass program missing")?
            .try_into()?)
    }

    /// Attaches natively to `interface` (of the calling thread's network
    /// namespace) for as long as this value lives.
    pub fn attach(&mut self, interface: &str) -> Result<()> {
        self.program()?
            .attach(interface, XdpMode::Driver)
            .with_context(|| format!("attach pass program to {interface}"))?;
        Ok(())
    }

    /// Average time per run over `repeat` runs of `frame`, as the kernel
    /// measured it.
    pub fn time_run(&mut self, frame: &[u8], repeat: u32) -> Result<Duration> {
        time_program(self.program()?, frame, repeat)
    }
}

fn time_program(program: &Xdp, frame: &[u8], repeat: u32) -> Result<Duration> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    options.data_out = Some(&mut out);
    options.repeat = repeat;
    Ok(program
        .test_run(options)
        .context("BPF_PROG_TEST_RUN")?
        .duration)
}
