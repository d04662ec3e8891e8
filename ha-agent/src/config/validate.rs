//! Validation of the file as a whole and of its plain values: `[node]`,
//! `[datapath]`, `[[vip]]` with their backends, `[metrics]`, and the value
//! kinds every section uses (addresses, MACs, durations, commands).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ha_common::{MAX_BACKENDS, MAX_RING_SIZE, MAX_VIPS};
use toml::Spanned;

use super::check::CheckFields;
use super::error::Source;
use super::raw::{RawBackend, RawCommand, RawConfig, RawDatapath, RawMetrics, RawNode, RawVip};
use super::{
    BackendConfig, ClusterConfig, Config, ConfigError, DEFAULT_ANNOUNCE_COUNT,
    DEFAULT_ANNOUNCE_INTERVAL, DEFAULT_CONTROL_DIR, DatapathConfig, MAX_ANNOUNCE_COUNT,
    MAX_ANNOUNCE_INTERVAL, MAX_CHECK_DURATION, MAX_FLOWS, MAX_INTERFACE_NAME, MAX_NODE_NAME,
    MAX_SOCKET_PATH, MAX_VIP_NAME, MAX_WEIGHT, MIN_CHECK_DURATION, MIN_RING_SIZE, MetricsConfig,
    NoBackend, NodeConfig, VipConfig, format_duration,
};
use crate::maglev::is_prime;
use crate::model::{Mac, Protocol};

impl Source<'_> {
    pub(super) fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let node = self.node(raw.node)?;
        let (datapath, explicit_ring_size) = self.datapath(raw.datapath)?;
        // [health] is validated on its own (values, and fields that belong
        // to its type); what depends on the merge with [vip.check] is
        // validated per VIP.
        let health = match &raw.health {
            Some(health) => {
                let fields = self.check_fields(health, "health")?;
                self.check_applies(&fields)?;
                fields
            }
            None => CheckFields::default(),
        };
        if raw.vip.is_empty() {
            return Err(self.error(0, "vip", "at least one [[vip]] is required"));
        }

        let mut vips: Vec<VipConfig> = Vec::with_capacity(raw.vip.len());
        // (address, port, protocol) and name -> index of the first VIP.
        let mut services: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut groups: Vec<String> = Vec::new();
        let mut total_backends = 0;
        for (v, raw_vip) in raw.vip.iter().enumerate() {
            let path = format!("vip[{v}]");
            if v >= MAX_VIPS as usize - 1 {
                return Err(self.at(
                    raw_vip,
                    &path,
                    format!("at most {} VIPs are supported", MAX_VIPS - 1),
                ));
            }
            let vip = self.vip(
                raw_vip,
                &path,
                &health,
                &mut total_backends,
                &mut groups,
                &vips,
            )?;
            let raw_vip = raw_vip.get_ref();
            if let Some(first) = services.insert((vip.address, vip.port, vip.protocol), v) {
                return Err(self.at(
                    &raw_vip.address,
                    format!("{path}.address"),
                    format!(
                        "duplicate VIP {}/{} (also vip[{first}])",
                        SocketAddr::new(vip.address, vip.port),
                        vip.protocol
                    ),
                ));
            }
            if let Some(first) = names.insert(vip.name.clone(), v) {
                // Point at the name, or at the address it was made from.
                let message = format!("duplicate VIP name `{}` (also vip[{first}])", vip.name);
                return Err(match &raw_vip.name {
                    Some(name) => self.at(name, format!("{path}.name"), message),
                    None => self.at(&raw_vip.address, format!("{path}.address"), message),
                });
            }
            self.one_group_per_address(&vip, raw_vip, &path, &vips, &groups)?;
            vips.push(vip);
        }

        if let Some(ring_size) = explicit_ring_size {
            let too_small = vips
                .iter()
                .enumerate()
                .find(|(_, vip)| vip.backends.len() >= datapath.ring_size as usize);
            if let Some((v, vip)) = too_small {
                return Err(self.at(
                    &ring_size,
                    "datapath.ring_size",
                    format!(
                        "must be larger than the {} backends of vip[{v}] `{}`",
                        vip.backends.len(),
                        vip.name
                    ),
                ));
            }
        }
        let cluster = match &raw.cluster {
            Some(cluster) => Some(self.cluster(cluster, &node, &vips)?),
            None => None,
        };
        self.backends_are_servers(&raw.vip, &vips, &node, cluster.as_ref())?;
        let metrics = match &raw.metrics {
            Some(metrics) => Some(self.metrics(metrics)?),
            None => None,
        };
        Ok(Config {
            node,
            datapath,
            vips,
            cluster,
            groups,
            metrics,
        })
    }

    /// `[metrics]`: a socket address the HTTP server can listen on.
    fn metrics(&self, raw: &RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let text = raw.listen.get_ref();
        let listen: SocketAddr = text.parse().map_err(|_| {
            self.at(
                &raw.listen,
                "metrics.listen",
                format!(
                    "`{text}` is not a socket address (an IP address and a port, e.g. 127.0.0.1:9810 or [::1]:9810)"
                ),
            )
        })?;
        let problem = match listen.ip() {
            _ if listen.port() == 0 => Some("port 0 is not allowed: a scraper needs a fixed port"),
            IpAddr::V4(a) if a.is_broadcast() => {
                Some("the broadcast address cannot be listened on")
            }
            a if a.is_multicast() => Some("a multicast address cannot be listened on"),
            _ => None,
        };
        match problem {
            Some(problem) => Err(self.at(
                &raw.listen,
                "metrics.listen",
                format!("{listen}: {problem}"),
            )),
            None => Ok(MetricsConfig { listen }),
        }
    }

    /// A VIP's address is answered for by the owner of its group: a VIP on
    /// the address of an `earlier` one must be in that one's group (its
    /// default), or two owners would answer ARP/NDP for the address.
    fn one_group_per_address(
        &self,
        vip: &VipConfig,
        raw: &RawVip,
        path: &str,
        earlier: &[VipConfig],
        groups: &[String],
    ) -> Result<(), ConfigError> {
        let Some((first, other)) = earlier
            .iter()
            .enumerate()
            .find(|(_, e)| e.address == vip.address && e.group != vip.group)
        else {
            return Ok(());
        };
        let group = &groups[other.group];
        let message = format!(
            "{} is also the address of vip[{first}] `{}` in group `{group}`; VIPs that share an address must be in one group (ARP/NDP answers for the address, so two owners would both answer): write group = \"{group}\" or leave it out",
            vip.address, other.name
        );
        Err(match &raw.group {
            Some(written) => self.at(written, format!("{path}.group"), message),
            None => self.at(&raw.address, format!("{path}.address"), message),
        })
    }

    /// A backend must be a real server. A VIP's or a load balancer's
    /// address would bring the VIP's frames back to a node whose XDP
    /// program steers them again: a forwarding loop. Without `[cluster]`
    /// the file names no address of this node, so a backend that is this
    /// node is not caught here (nor a load balancer under another of its
    /// addresses).
    fn backends_are_servers(
        &self,
        raw: &[Spanned<RawVip>],
        vips: &[VipConfig],
        node: &NodeConfig,
        cluster: Option<&ClusterConfig>,
    ) -> Result<(), ConfigError> {
        let nodes = cluster.map_or(&[][..], |c| &c.nodes[..]);
        for (v, (vip, raw_vip)) in vips.iter().zip(raw).enumerate() {
            let raw_backends = &raw_vip.get_ref().backend;
            for (b, (backend, raw_backend)) in vip.backends.iter().zip(raw_backends).enumerate() {
                let address = backend.address;
                let problem = if let Some((i, other)) =
                    vips.iter().enumerate().find(|(_, o)| o.address == address)
                {
                    format!(
                        "{address} is the address of vip[{i}] `{}`: a backend must be a real server, not a VIP (its frames would come back to a load balancer and be steered again, a forwarding loop)",
                        other.name
                    )
                } else if let Some((i, member)) =
                    nodes.iter().enumerate().find(|(_, n)| n.address == address)
                {
                    let whose = if member.name == node.name {
                        "this node"
                    } else {
                        "a peer"
                    };
                    format!(
                        "{address} is the address of cluster.node[{i}] `{}` ({whose}): a load balancer cannot be a backend (its XDP program would steer the frames again, a forwarding loop); run the service on other hosts",
                        member.name
                    )
                } else {
                    continue;
                };
                return Err(self.at(
                    &raw_backend.address,
                    format!("vip[{v}].backend[{b}].address"),
                    problem,
                ));
            }
        }
        Ok(())
    }

    /// One `[[vip]]` on its own, with the check defaults of `[health]`;
    /// `total_backends` counts backends over all VIPs so far, `groups`
    /// collects the group names in order of first appearance, and
    /// `earlier` are the VIPs before it (a VIP without a group joins the
    /// group of the first of them on its address).
    fn vip(
        &self,
        spanned: &Spanned<RawVip>,
        path: &str,
        health: &CheckFields,
        total_backends: &mut usize,
        groups: &mut Vec<String>,
        earlier: &[VipConfig],
    ) -> Result<VipConfig, ConfigError> {
        let raw = spanned.get_ref();
        let address = self.address(&raw.address, &format!("{path}.address"))?;
        let port = *raw.port.get_ref();
        if port == 0 {
            return Err(self.at(&raw.port, format!("{path}.port"), "must be 1..=65535"));
        }
        let name = match &raw.name {
            Some(name) => {
                check_vip_name(name.get_ref())
                    .map_err(|m| self.at(name, format!("{path}.name"), m))?;
                name.get_ref().clone()
            }
            None => format!("{}/{}", SocketAddr::new(address, port), raw.protocol),
        };
        if raw.backend.is_empty() {
            return Err(self.at(
                spanned,
                format!("{path}.backend"),
                "a VIP needs at least one [[vip.backend]]",
            ));
        }

        let mut backends: Vec<BackendConfig> = Vec::with_capacity(raw.backend.len());
        // Backend address -> index of its first occurrence.
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (b, raw_backend) in raw.backend.iter().enumerate() {
            let backend_path = format!("{path}.backend[{b}]");
            let address_field = format!("{backend_path}.address");
            *total_backends += 1;
            if *total_backends > MAX_BACKENDS as usize - 1 {
                return Err(self.at(
                    &raw_backend.address,
                    address_field,
                    format!(
                        "at most {} backends are supported over all VIPs",
                        MAX_BACKENDS - 1
                    ),
                ));
            }
            let backend = self.backend(raw_backend, &backend_path)?;
            if backend.address.is_ipv4() != address.is_ipv4() {
                return Err(self.at(
                    &raw_backend.address,
                    address_field,
                    format!(
                        "{} backend for an {} VIP",
                        family(backend.address),
                        family(address)
                    ),
                ));
            }
            if let Some(first) = seen.insert(backend.address, b) {
                return Err(self.at(
                    &raw_backend.address,
                    address_field,
                    format!(
                        "duplicate backend {} (also {path}.backend[{first}])",
                        backend.address
                    ),
                ));
            }
            backends.push(backend);
        }
        let local = match &raw.check {
            Some(check) => self.check_fields(check, &format!("{path}.check"))?,
            None => CheckFields::default(),
        };
        let check = self.check(health.merged(local), port, path)?;
        let group_name = match &raw.group {
            Some(group) => {
                check_vip_name(group.get_ref())
                    .map_err(|m| self.at(group, format!("{path}.group"), m))?;
                group.get_ref().clone()
            }
            None => match earlier.iter().find(|e| e.address == address) {
                Some(first) => groups[first.group].clone(),
                None => name.clone(),
            },
        };
        let group = match groups.iter().position(|g| *g == group_name) {
            Some(group) => group,
            None => {
                groups.push(group_name);
                groups.len() - 1
            }
        };
        Ok(VipConfig {
            name,
            address,
            port,
            protocol: raw.protocol,
            backends,
            on_no_backend: raw.on_no_backend.unwrap_or(NoBackend::Drop),
            check,
            group,
        })
    }

    /// A command to run: an absolute path, then arguments (no shell).
    pub(super) fn command(
        &self,
        raw: &RawCommand,
        field: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let words = raw.get_ref();
        let Some(program) = words.first() else {
            return Err(self.at(
                raw,
                field,
                "must name a program (an absolute path) and its arguments",
            ));
        };
        if !Path::new(program.get_ref()).is_absolute() {
            return Err(self.at(
                program,
                format!("{field}[0]"),
                format!(
                    "`{}` must be an absolute path (commands run without a shell or PATH)",
                    program.get_ref()
                ),
            ));
        }
        if let Some((i, word)) = words
            .iter()
            .enumerate()
            .find(|(_, w)| w.get_ref().contains('\0'))
        {
            return Err(self.at(word, format!("{field}[{i}]"), "must not contain NUL"));
        }
        Ok(words.iter().map(|w| w.get_ref().clone()).collect())
    }

    /// A check interval or timeout: `<n>ms` or `<n>s`, 1ms..=1h.
    pub(super) fn duration(
        &self,
        raw: &Spanned<String>,
        field: &str,
    ) -> Result<Duration, ConfigError> {
        self.duration_in(raw, field, MIN_CHECK_DURATION..=MAX_CHECK_DURATION)
    }

    /// A duration, `<n>ms` or `<n>s`, within `range`.
    pub(super) fn duration_in(
        &self,
        raw: &Spanned<String>,
        field: &str,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let text = raw.get_ref();
        let duration = parse_duration(text).ok_or_else(|| {
            self.at(
                raw,
                field,
                format!("`{text}` is not a duration; write e.g. \"500ms\" or \"2s\""),
            )
        })?;
        if !range.contains(&duration) {
            return Err(self.at(
                raw,
                field,
                format!(
                    "must be {}..={}",
                    format_duration(*range.start()),
                    format_duration(*range.end())
                ),
            ));
        }
        Ok(duration)
    }

    fn node(&self, raw: RawNode) -> Result<NodeConfig, ConfigError> {
        let name = raw.name.get_ref();
        check_node_name(name).map_err(|m| self.at(&raw.name, "node.name", m))?;
        // The kernel's dev_valid_name().
        let interface = raw.interface.get_ref();
        let interface_ok = (1..=MAX_INTERFACE_NAME).contains(&interface.len())
            && !interface
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace())
            && interface != "."
            && interface != "..";
        if !interface_ok {
            return Err(self.at(
                &raw.interface,
                "node.interface",
                format!(
                    "must be 1..={MAX_INTERFACE_NAME} bytes without `/`, `:` or whitespace (not `.` or `..`)"
                ),
            ));
        }
        let mac = self.mac(raw.mac.as_ref(), "node.mac")?;
        let control_socket = match &raw.control_socket {
            Some(socket) => {
                let text = socket.get_ref();
                if !Path::new(text).is_absolute()
                    || text.len() > MAX_SOCKET_PATH
                    || text.contains('\0')
                {
                    return Err(self.at(
                        socket,
                        "node.control_socket",
                        format!(
                            "must be an absolute path of at most {MAX_SOCKET_PATH} bytes (a Unix socket)"
                        ),
                    ));
                }
                PathBuf::from(text)
            }
            None => PathBuf::from(format!("{DEFAULT_CONTROL_DIR}/{name}.sock")),
        };
        let (announce_count, announce_interval) = self.announce(
            raw.announce_count.as_ref(),
            raw.announce_interval.as_ref(),
            "node",
            (DEFAULT_ANNOUNCE_COUNT, DEFAULT_ANNOUNCE_INTERVAL),
        )?;
        Ok(NodeConfig {
            name: name.clone(),
            interface: interface.clone(),
            mac,
            control_socket,
            announce_count,
            announce_interval,
        })
    }

    /// `announce_count` (1..=50) and `announce_interval` (0ms..=10s) of
    /// `section`, each `default` when not written.
    pub(super) fn announce(
        &self,
        count: Option<&Spanned<u32>>,
        interval: Option<&Spanned<String>>,
        section: &str,
        default: (u32, Duration),
    ) -> Result<(u32, Duration), ConfigError> {
        let count = match count {
            Some(count) if !(1..=MAX_ANNOUNCE_COUNT).contains(count.get_ref()) => {
                return Err(self.at(
                    count,
                    format!("{section}.announce_count"),
                    format!("must be 1..={MAX_ANNOUNCE_COUNT}"),
                ));
            }
            Some(count) => *count.get_ref(),
            None => default.0,
        };
        let interval = match interval {
            Some(interval) => self.duration_in(
                interval,
                &format!("{section}.announce_interval"),
                Duration::ZERO..=MAX_ANNOUNCE_INTERVAL,
            )?,
            None => default.1,
        };
        Ok((count, interval))
    }

    /// The datapath section, and the explicit `ring_size` if one was given.
    fn datapath(
        &self,
        raw: Option<RawDatapath>,
    ) -> Result<(DatapathConfig, Option<Spanned<u32>>), ConfigError> {
        let mut datapath = DatapathConfig::default();
        let Some(raw) = raw else {
            return Ok((datapath, None));
        };
        if let Some(ring_size) = &raw.ring_size {
            let size = *ring_size.get_ref();
            if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&size) {
                return Err(self.at(
                    ring_size,
                    "datapath.ring_size",
                    format!("must be {MIN_RING_SIZE}..={MAX_RING_SIZE}"),
                ));
            }
            if !is_prime(size) {
                let next = (size..=MAX_RING_SIZE)
                    .find(|&n| is_prime(n))
                    .unwrap_or(MAX_RING_SIZE);
                return Err(self.at(
                    ring_size,
                    "datapath.ring_size",
                    format!(
                        "{size} is not prime (Maglev needs a prime size; the next prime is {next})"
                    ),
                ));
            }
            datapath.ring_size = size;
        }
        if let Some(max_flows) = &raw.max_flows {
            let flows = *max_flows.get_ref();
            if !(1..=MAX_FLOWS).contains(&flows) {
                return Err(self.at(
                    max_flows,
                    "datapath.max_flows",
                    format!("must be 1..={MAX_FLOWS}"),
                ));
            }
            datapath.max_flows = flows;
        }
        if let Some(pin_dir) = &raw.pin_dir {
            let path = Path::new(pin_dir.get_ref());
            if !path.is_absolute() {
                return Err(self.at(pin_dir, "datapath.pin_dir", "must be an absolute path"));
            }
            datapath.pin_dir = path.to_owned();
        }
        Ok((datapath, raw.ring_size))
    }

    fn backend(&self, raw: &RawBackend, path: &str) -> Result<BackendConfig, ConfigError> {
        let address = self.address(&raw.address, &format!("{path}.address"))?;
        let weight = match &raw.weight {
            Some(weight) if *weight.get_ref() > MAX_WEIGHT => {
                return Err(self.at(
                    weight,
                    format!("{path}.weight"),
                    format!("must be 0..={MAX_WEIGHT}"),
                ));
            }
            Some(weight) => *weight.get_ref(),
            None => 1,
        };
        Ok(BackendConfig {
            address,
            weight,
            mac: self.mac(raw.mac.as_ref(), &format!("{path}.mac"))?,
        })
    }

    /// A VIP or backend address: a unicast IPv4 or IPv6 address.
    pub(super) fn address(
        &self,
        raw: &Spanned<String>,
        field: &str,
    ) -> Result<IpAddr, ConfigError> {
        let text = raw.get_ref();
        let address: IpAddr = text.parse().map_err(|_| {
            self.at(
                raw,
                field,
                format!("`{text}` is not an IPv4 or IPv6 address"),
            )
        })?;
        let problem = match address {
            IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
            IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
                Some("an IPv4-mapped IPv6 address (write the IPv4 address)")
            }
            a if a.is_unspecified() => Some("the unspecified address"),
            a if a.is_loopback() => Some("a loopback address"),
            a if a.is_multicast() => Some("a multicast address"),
            _ => None,
        };
        match problem {
            Some(problem) => Err(self.at(
                raw,
                field,
                format!("{address} is {problem}; a unicast address is needed"),
            )),
            None => Ok(address),
        }
    }

    pub(super) fn mac(
        &self,
        raw: Option<&Spanned<String>>,
        field: &str,
    ) -> Result<Option<Mac>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mac: Mac = raw.get_ref().parse().map_err(|_| {
            self.at(
                raw,
                field,
                format!(
                    "`{}` is not a MAC address (six hex octets separated by `:`, e.g. 02:00:00:00:00:01)",
                    raw.get_ref()
                ),
            )
        })?;
        if !mac.is_unicast() {
            return Err(self.at(raw, field, "must be a unicast MAC address, not zero"));
        }
        Ok(Some(mac))
    }
}

/// Checks a node name: it names the pin directory and goes in heartbeats.
pub(super) fn check_node_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NODE_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1..={MAX_NODE_NAME} characters of A-Z a-z 0-9 _ . - (not `.` or `..`)"
        ))
    }
}

/// Checks an explicit VIP name; it is a label in status output and metrics.
pub(super) fn check_vip_name(name: &str) -> Result<(), String> {
    if (1..=MAX_VIP_NAME).contains(&name.len())
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Ok(())
    } else {
        Err(format!(
            "must be 1..={MAX_VIP_NAME} bytes without whitespace or control characters"
        ))
    }
}

fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Parses a check duration, `<n>ms` or `<n>s` (`n` decimal digits).
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, unit_ms) = match text.strip_suffix("ms") {
        Some(digits) => (digits, 1),
        None => (text.strip_suffix('s')?, 1000),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(unit_ms)?))
}
