//! The only module that touches aya: loading the embedded XDP object (or
//! another build of it, for upgrades), attaching and pinning it, writing
//! and reading its maps.
//!
//! Rings are written through an mmap of the RINGS array (one memcpy for a
//! whole table instead of one bpf() syscall per slot), into the VIP's
//! inactive generation; the generation flip is then a single VIPS update,
//! so packets see the old table or the new one, never a mix.

use std::{
    fs,
    num::NonZeroUsize,
    os::fd::AsFd,
    path::{Path, PathBuf},
    ptr::NonNull,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues},
    programs::{
        TestRun, TestRunOptions, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        loaded_programs,
        xdp::XdpLink,
    },
};
use ha_common::{
    Addr, Backend, Counter, FlowKey, FlowValue, GLOBAL_NODE_MAC, GLOBAL_RING_SIZE, OwnedLease,
    PROGRAM_NAME, STATS_LEN, VipKey, VipValue, map, ring_index, rings_len,
};
use nix::{
    sys::{
        mman::{MapFlags, ProtFlags, mmap, munmap},
        resource::{RLIM_INFINITY, Resource, setrlimit},
    },
    time::{ClockId, clock_gettime},
    unistd::{SysconfVar, sysconf},
};

use crate::{datapath_log::DatapathLog, desired::Write};

#[cfg(feature = "bench")]
pub mod bench;
pub(crate) mod bpffs;
pub mod pins;

/// The XDP object, built by `cargo xtask build-ebpf` and embedded by build.rs.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-xdp.o"));

/// The XDP_PASS verdict.
const XDP_PASS: u32 = 2;
/// File name of the pinned XDP link inside the pin directory.
const LINK_PIN: &str = "link";
/// Array maps lay out values on 8-byte strides (kernel: round_up(value_size, 8)).
const ARRAY_STRIDE_U32S: usize = 2;

/// What the program is loaded with; fixed for the life of the maps.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub ring_size: u32,
    pub max_flows: u32,
    pub node_mac: [u8; 6],
    /// Pin maps (and, once attached, the link) here; None for tests.
    pub pin_dir: Option<PathBuf>,
    /// Load this XDP object file instead of the embedded one (an upgrade
    /// to another build of the program); None: the embedded object.
    pub object: Option<PathBuf>,
}

/// How the program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Native,
    /// In the generic network stack: slower, but works on every device.
    Generic,
    /// An existing pinned link was atomically switched to this program.
    Replaced,
}

/// Typed handles on every map of the program.
pub struct Maps {
    vips: HashMap<MapData, VipKey, VipValue>,
    backends: Array<MapData, Backend>,
    flows: HashMap<MapData, FlowKey, FlowValue>,
    stats: PerCpuArray<MapData, Counter>,
    owned: HashMap<MapData, Addr, OwnedLease>,
}

impl Maps {
    fn take(ebpf: &mut Ebpf) -> Result<(Maps, Map)> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the XDP object"))
        };
        let maps = Maps {
            vips: HashMap::try_from(take(map::VIPS)?)?,
            backends: Array::try_from(take(map::BACKENDS)?)?,
            flows: HashMap::try_from(take(map::FLOWS)?)?,
            stats: PerCpuArray::try_from(take(map::STATS)?)?,
            owned: HashMap::try_from(take(map::OWNED)?)?,
        };
        Ok((maps, take(map::RINGS)?))
    }

    /// Opens the maps a running (or crashed) agent pinned under `dir`.
    pub fn open_pinned(dir: &Path) -> Result<Maps> {
        let open = |name: &str| -> Result<Map> {
            let path = dir.join(name);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("open pinned map {}", path.display()))?;
            Ok(Map::from_map_data(data)?)
        };
        Ok(Maps {
            vips: HashMap::try_from(open(map::VIPS)?)?,
            backends: Array::try_from(open(map::BACKENDS)?)?,
            flows: HashMap::try_from(open(map::FLOWS)?)?,
            stats: PerCpuArray::try_from(open(map::STATS)?)?,
            owned: HashMap::try_from(open(map::OWNED)?)?,
        })
    }

    pub fn vips(&self) -> Result<Vec<(VipKey, VipValue)>> {
        let mut vips = self.vips.iter().collect::<Result<Vec<_>, _>>()?;
        vips.sort_by_key(|(_, v)| v.vip_id);
        Ok(vips)
    }

    pub fn vip(&self, key: &VipKey) -> Option<VipValue> {
        self.vips.get(key, 0).ok()
    }

    /// One flow's entry, if the table holds it.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowValue> {
        self.flows.get(key, 0).ok()
    }

    /// Every backend slot in use (id != 0, address set).
    pub fn backends(&self) -> Result<Vec<(u32, Backend)>> {
        let mut out = Vec::new();
        for (id, backend) in self.backends.iter().enumerate().skip(1) {
            let backend = backend?;
            if backend != Backend::default() {
                out.push((id as u32, backend));
            }
        }
        Ok(out)
    }

    /// The number of flows and up to `limit` of them.
    pub fn flows(&self, limit: usize) -> Result<(usize, Vec<(FlowKey, FlowValue)>)> {
        let mut count = 0;
        let mut sample = Vec::new();
        for entry in self.flows.iter() {
            let entry = entry?;
            if sample.len() < limit {
                sample.push(entry);
            }
            count += 1;
        }
        Ok((count, sample))
    }

    /// Every STATS slot summed over CPUs.
    pub fn counters(&self) -> Result<Vec<Counter>> {
        (0..STATS_LEN)
            .map(|i| {
                let per_cpu = self.stats.get(&i, 0)?;
                Ok(per_cpu.iter().fold(Counter::default(), |sum, c| Counter {
                    packets: sum.packets + c.packets,
                    bytes: sum.bytes + c.bytes,
                }))
            })
            .collect()
    }

    /// Addresses this node answers ARP/NDP for, with their lease deadlines.
    pub fn owned(&self) -> Result<Vec<(Addr, OwnedLease)>> {
        Ok(self.owned.iter().collect::<Result<Vec<_>, _>>()?)
    }
}

/// The RINGS array mapped into our address space.
struct RingMemory {
    base: NonNull<u32>,
    len_bytes: NonZeroUsize,
    slots: usize,
    /// RINGS itself, open for as long as it is mapped; written through it
    /// only by the benchmark's syscall baseline.
    #[cfg_attr(
        not(feature = "bench"),
        expect(dead_code, reason = "held open; read only by the bench feature")
    )]
    map: Map,
}

// SAFETY: the mapping belongs to this struct alone (`base` never leaves it)
// and is not tied to the thread that made it; it is written only through
// &mut self and read through &self, so moving it to another thread is as
// sound as moving a Vec.
unsafe impl Send for RingMemory {}

impl RingMemory {
    fn map(map: Map, slots: usize) -> Result<RingMemory> {
        let Map::Array(data) = &map else {
            bail!("map {} is not an array", map::RINGS);
        };
        let page = page_size()?;
        let len_bytes = NonZeroUsize::new((slots * ARRAY_STRIDE_U32S * 4).div_ceil(page) * page)
            .with_context(|| format!("map {} has no slots", map::RINGS))?;
        // SAFETY: a new shared mapping at an address the kernel picks (no
        // existing memory is replaced) of a BPF_F_MMAPABLE array of `slots`
        // elements; the kernel checks the length against the map. The
        // memory is only accessed through `base` below `slots` elements and
        // unmapped in Drop.
        let base = unsafe {
            mmap(
                None,
                len_bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                data.fd().as_fd(),
                0,
            )
        }
        .context("mmap RINGS")?;
        Ok(RingMemory {
            base: base.cast(),
            len_bytes,
            slots,
            map,
        })
    }

    fn write(&mut self, first: u32, table: &[u32]) {
        let first = first as usize;
        assert!(
            first + table.len() <= self.slots,
            "ring write out of bounds"
        );
        for (i, &backend_id) in table.iter().enumerate() {
            // SAFETY: in bounds of the mapping (asserted above) and aligned
            // (a page-aligned base, 8-byte strides); &mut self excludes other
            // writers in this process. Aligned u32 stores are single stores,
            // so the datapath, which only reads, never sees a torn slot.
            unsafe {
                self.base
                    .as_ptr()
                    .add((first + i) * ARRAY_STRIDE_U32S)
                    .write_volatile(backend_id)
            };
        }
    }

    fn read(&self, first: u32, len: usize) -> Vec<u32> {
        let first = first as usize;
        assert!(first + len <= self.slots, "ring read out of bounds");
        (0..len)
            // SAFETY: in bounds of the mapping (asserted above) and aligned,
            // as in `write`; the memory stays mapped while &self lives.
            .map(|i| unsafe {
                self.base
                    .as_ptr()
                    .add((first + i) * ARRAY_STRIDE_U32S)
                    .read_volatile()
            })
            .collect()
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: exactly the region mapped in `map`; nothing borrowed from
        // it outlives `self`. munmap of a mapped region cannot fail.
        let _ = unsafe { munmap(self.base.cast(), self.len_bytes.get()) };
    }
}

/// A loaded XDP program with its maps.
pub struct Datapath {
    ebpf: Ebpf,
    maps: Maps,
    rings: RingMemory,
    ring_size: u32,
    pin_dir: Option<PathBuf>,
    /// Our reference to the XDP link; pinned links also live in bpffs.
    link: Option<FdLink>,
    /// The program's log events into ours, while a tokio runtime runs.
    _log: Option<DatapathLog>,
}

impl Datapath {
    /// Loads the program and creates its maps; with a pin directory, maps
    /// already pinned there are reused, so a restarted agent adopts them.
    pub fn load(options: &LoadOptions) -> Result<Datapath> {
        raise_memlock_limit();
        let mut loader = EbpfLoader::new();
        loader
            .override_global(GLOBAL_RING_SIZE, &options.ring_size, true)
            .override_global(GLOBAL_NODE_MAC, &options.node_mac, true)
            .map_max_entries(map::RINGS, rings_len(options.ring_size))
            .map_max_entries(map::FLOWS, options.max_flows);
        let pins: Vec<(&str, PathBuf)> = match &options.pin_dir {
            Some(dir) => {
                bpffs::prepare()?;
                fs::create_dir_all(dir)
                    .with_context(|| format!("create pin directory {}", dir.display()))?;
                map::ALL
                    .iter()
                    .map(|name| (*name, dir.join(name)))
                    .collect()
            }
            None => Vec::new(),
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let file;
        let (object, origin) = match &options.object {
            Some(path) => {
                file = fs::read(path)
                    .with_context(|| format!("read the XDP object {}", path.display()))?;
                (&file[..], format!("the XDP object {}", path.display()))
            }
            None => (XDP_OBJECT, "the embedded XDP object".to_string()),
        };
        let mut ebpf = loader.load(object).with_context(|| {
            format!("load {origin} (maps pinned by an agent with another ring_size or max_flows must be removed first: hactl unpin --pin-dir DIR)")
        })?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .context("XDP program missing from the object")?
            .try_into()?;
        program
            .load()
            .with_context(|| format!("verifier rejected the XDP program of {origin}"))?;
        // Layouts and limits are compiled into both sides: taking the maps
        // checks every key and value size, and STATS' length is checked
        // here (a stale object would count into the wrong slots). Both
        // before anything is attached: an object built from another
        // ha-common never replaces a running program.
        let (maps, rings) = Maps::take(&mut ebpf).with_context(|| {
            format!("{origin} was built from another ha-common (its maps differ): rebuild it with cargo xtask build-ebpf")
        })?;
        ensure!(
            maps.stats.len() == STATS_LEN,
            "{origin} was built from another ha-common (STATS has {} slots, expected {STATS_LEN}): rebuild it with cargo xtask build-ebpf",
            maps.stats.len()
        );
        let slots = rings_len(options.ring_size) as usize;
        let log = DatapathLog::start(&mut ebpf);
        Ok(Datapath {
            ebpf,
            maps,
            rings: RingMemory::map(rings, slots)?,
            ring_size: options.ring_size,
            pin_dir: options.pin_dir.clone(),
            link: None,
            _log: log,
        })
    }

    fn program(&mut self) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .context("XDP program missing")?
            .try_into()?)
    }

    /// The kernel's view of the loaded program (id, tag, sizes).
    pub fn program_info(&mut self) -> Result<ProgramInfo> {
        ProgramInfo::of(&self.program()?.info()?)
    }

    /// Attaches to `interface`: switches the link an earlier agent pinned
    /// over to this program (atomically: no packet sees no program), else
    /// attaches natively, falling back to generic mode. Pins the new link
    /// when we pin.
    pub fn attach(&mut self, interface: &str) -> Result<AttachMode> {
        let link_pin = self.pin_dir.as_ref().map(|d| d.join(LINK_PIN));
        if let Some(path) = link_pin.as_ref().filter(|p| p.exists()) {
            let pinned = PinnedLink::from_pin(path)
                .with_context(|| format!("open pinned link {}", path.display()))?;
            let program = self.program()?;
            let id = program
                .attach_to_link(XdpLink::try_from(FdLink::from(pinned))?)
                .context("atomically replace the program on the pinned link")?;
            self.link = Some(FdLink::try_from(program.take_link(id)?)?);
            return Ok(AttachMode::Replaced);
        }
        let program = self.program()?;
        let (id, mode) = match program.attach(interface, XdpMode::Driver) {
            Ok(id) => (id, AttachMode::Native),
            Err(native) => {
                tracing::warn!(%interface, error = %native, "native XDP unavailable, using generic mode");
                let id = program
                    .attach(interface, XdpMode::Skb)
                    .with_context(|| format!("attach XDP to {interface}"))?;
                (id, AttachMode::Generic)
            }
        };
        let link = FdLink::try_from(program.take_link(id)?)?;
        if let Some(path) = link_pin {
            // A pinned link outlives this process; our fd stays valid.
            let pinned = link
                .pin(&path)
                .with_context(|| format!("pin link {}", path.display()))?;
            self.link = Some(FdLink::from(pinned));
        } else {
            self.link = Some(link);
        }
        Ok(mode)
    }

    /// Detaches the program and removes every pin and the pin directory.
    pub fn detach_and_unpin(mut self) -> Result<()> {
        if let Some(dir) = &self.pin_dir {
            unpin_dir(dir)?;
        }
        // The last reference to the link goes with this fd: detached.
        drop(self.link.take());
        Ok(())
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// Executes planned writes in their order.
    pub fn apply(&mut self, writes: &[Write]) -> Result<()> {
        for write in writes {
            match write {
                Write::Backend(id, backend) => self.set_backend(*id, backend)?,
                Write::Ring {
                    vip_id,
                    generation,
                    table,
                } => self.write_ring(*vip_id, *generation, table)?,
                Write::Vip(key, value) => self.set_vip(key, value)?,
                Write::RemoveVip(key) => self.remove_vip(key)?,
                Write::ClearCounters(index) => self.clear_counters(*index)?,
            }
        }
        Ok(())
    }

    fn clear_counters(&mut self, index: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let zero = PerCpuValues::try_from(vec![Counter::default(); cpus])?;
        self.maps
            .stats
            .set(index, zero, 0)
            .with_context(|| format!("clear STATS[{index}]"))
    }

    fn set_vip(&mut self, key: &VipKey, value: &VipValue) -> Result<()> {
        self.maps.vips.insert(key, value, 0).context("update VIPS")
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        self.maps.vips.remove(key).context("remove from VIPS")
    }

    fn set_backend(&mut self, backend_id: u32, backend: &Backend) -> Result<()> {
        self.maps
            .backends
            .set(backend_id, backend, 0)
            .with_context(|| format!("update BACKENDS[{backend_id}]"))
    }

    /// Writes a whole Maglev table into one generation of a VIP's ring.
    fn write_ring(&mut self, vip_id: u32, generation: u32, table: &[u32]) -> Result<()> {
        ensure!(
            table.len() == self.ring_size as usize,
            "ring of {} slots for a table of size {}",
            table.len(),
            self.ring_size
        );
        self.rings
            .write(ring_index(vip_id, generation, self.ring_size, 0), table);
        Ok(())
    }

    /// Reads one generation of a VIP's ring back (tests, the benchmark).
    pub fn read_ring(&self, vip_id: u32, generation: u32) -> Vec<u32> {
        self.rings.read(
            ring_index(vip_id, generation, self.ring_size, 0),
            self.ring_size as usize,
        )
    }

    /// Inserts or replaces the lease of `addr`. Replacing needs no free
    /// entry, so a renewal works in a full OWNED; a new address needs one
    /// (E2BIG otherwise): remove the leases that go first.
    pub fn set_owned(&mut self, addr: &Addr, lease: &OwnedLease) -> Result<()> {
        self.maps
            .owned
            .insert(addr, lease, 0)
            .context("update OWNED")
    }

    /// Writes one flow entry: the tests stage flows that an earlier config
    /// or an earlier time left (the agent itself never writes FLOWS).
    pub fn set_flow(&mut self, key: &FlowKey, value: &FlowValue) -> Result<()> {
        self.maps
            .flows
            .insert(key, value, 0)
            .context("update FLOWS")
    }

    pub fn remove_owned(&mut self, addr: &Addr) -> Result<()> {
        self.maps.owned.remove(addr).context("remove from OWNED")
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN): the verdict
    /// and the frame as the program left it.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.data_out = Some(&mut out);
        let result = self
            .program()?
            .test_run(options)
            .context("BPF_PROG_TEST_RUN")?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Whether the loaded program still runs and passes a frame that is
    /// not ours (an LLDP frame) untouched: part of this node's eligibility.
    pub fn self_check(&mut self) -> bool {
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[0x01, 0x80, 0xc2, 0, 0, 0x0e]);
        frame[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
        matches!(self.test_run(&frame), Ok((XDP_PASS, out)) if out == frame)
    }
}

/// The kernel's view of a loaded program (bpf_prog_info).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    pub id: u32,
    /// A hash of the program's instructions as loaded (map references
    /// zeroed, so independent of the maps and load-time globals): another
    /// build of the program has another tag.
    pub tag: u64,
    /// Instructions after the verifier's rewrites, in bytes (8 each).
    pub translated_bytes: u32,
    /// Machine code from the JIT, in bytes.
    pub jited_bytes: u32,
}

impl ProgramInfo {
    fn of(info: &aya::programs::ProgramInfo) -> Result<ProgramInfo> {
        Ok(ProgramInfo {
            id: info.id(),
            tag: info.tag(),
            translated_bytes: info
                .size_translated()
                .context("the kernel reports no translated size")?,
            jited_bytes: info.size_jitted(),
        })
    }
}

/// What runs on the link pinned under `dir`: the link's id and the program
/// attached to it. Replacing the program (an upgrade) keeps the link id
/// and changes the program.
pub fn pinned_link(dir: &Path) -> Result<(u32, ProgramInfo)> {
    let path = dir.join(LINK_PIN);
    let link = FdLink::from(
        PinnedLink::from_pin(&path)
            .with_context(|| format!("open pinned link {}", path.display()))?,
    );
    let info = link.info().context("BPF_LINK_GET_INFO")?;
    let program_id = info.program_id();
    for program in loaded_programs() {
        let program = program?;
        if program.id() == program_id {
            return Ok((info.id(), ProgramInfo::of(&program)?));
        }
    }
    bail!("program {program_id} of link {} not found", info.id())
}

/// Removes the pins under `dir` (link, maps and their record) and the
/// directory itself.
pub fn unpin_dir(dir: &Path) -> Result<()> {
    for name in map::ALL.iter().chain([&LINK_PIN, &pins::RECORD_PIN]) {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", path.display())),
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove {}", dir.display())),
    }
}

/// The clock of bpf_ktime_get_ns(), for lease deadlines.
pub fn monotonic_ns() -> u64 {
    clock_ns(ClockId::CLOCK_MONOTONIC)
}

/// The clock of bpf_ktime_get_coarse_ns(), for flow ages.
pub fn monotonic_coarse_ns() -> u64 {
    clock_ns(ClockId::CLOCK_MONOTONIC_COARSE)
}

fn clock_ns(clock: ClockId) -> u64 {
    // Fails only for a clock the kernel does not have; both exist since
    // Linux 2.6.32.
    let now = clock_gettime(clock).expect("the monotonic clocks exist");
    Duration::from(now).as_nanos() as u64
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones do
/// not. Raising it can fail without CAP_SYS_RESOURCE, which is fine there.
fn raise_memlock_limit() {
    if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        tracing::debug!(error = %e, "setrlimit(MEMLOCK) failed; fine on kernels >= 5.11");
    }
}

fn page_size() -> Result<usize> {
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .context("sysconf(PAGE_SIZE)")?
        .context("the system reports no page size")?;
    Ok(usize::try_from(page)?)
}
