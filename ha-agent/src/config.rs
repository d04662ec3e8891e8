//! The agent's TOML configuration: schema, defaults and validation.
//!
//! Why this exists: the whole node (datapath sizes, VIPs, backends) comes
//! from one file, and a bad file must change nothing (DESIGN §4). So the
//! file is parsed and fully validated here, before anything is applied, and
//! every error names the file, line, column and field, e.g.
//! `/etc/ha/ha.toml:12:11: vip[1].backend[0].address: IPv6 backend for an
//! IPv4 VIP`.
//!
//! How: serde reads the text into `Raw*` structs whose values are
//! [`toml::Spanned`], so each value still knows where it came from; the
//! checks below then build the clean public [`Config`]. Errors of the TOML
//! parser and of serde carry a byte span too; the field is found by looking
//! the span up in a [`toml_edit`] parse of the same text. The module is pure
//! apart from [`load`], which only reads the file.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ha_common::{
    DEFAULT_MAX_FLOWS, DEFAULT_RING_SIZE, MAX_BACKENDS, MAX_RING_SIZE, MAX_VIPS, PROTO_TCP,
    PROTO_UDP,
};
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::maglev::is_prime;

/// Default root of the pinned maps and link; the agent pins under
/// `<pin_dir>/<node.name>/`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ha";
/// Smallest accepted Maglev table size.
const MIN_RING_SIZE: u32 = 7;
/// Largest accepted connection-table capacity.
const MAX_FLOWS: u32 = 16_777_216;
/// Largest backend weight.
const MAX_WEIGHT: u32 = 65_535;
/// Longest node name (it names the pin directory).
const MAX_NODE_NAME: usize = 32;
/// Longest interface name: the kernel's IFNAMSIZ minus the NUL.
const MAX_INTERFACE_NAME: usize = 15;
/// Longest VIP name (a label in status output and metrics).
const MAX_VIP_NAME: usize = 64;

// A default ring is always larger than any VIP's backend count, so only an
// explicit `ring_size` needs checking against the backends.
const _: () = assert!(DEFAULT_RING_SIZE >= MAX_BACKENDS);

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    pub node: NodeConfig,
    pub datapath: DatapathConfig,
    pub vips: Vec<VipConfig>,
}

/// `[node]`: this load-balancer node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// Node name; also the name of its pin directory.
    pub name: String,
    /// The interface the XDP program attaches to.
    pub interface: String,
    /// MAC the node answers ARP/NDP with; `None`: the interface's own.
    #[serde(serialize_with = "serialize_mac")]
    pub mac: Option<[u8; 6]>,
}

/// `[datapath]`: sizes of the BPF maps and where they are pinned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatapathConfig {
    /// Maglev table size (prime).
    pub ring_size: u32,
    /// Capacity of the connection table.
    pub max_flows: u32,
    /// Root of the pinned state (absolute).
    pub pin_dir: PathBuf,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        DatapathConfig {
            ring_size: DEFAULT_RING_SIZE,
            max_flows: DEFAULT_MAX_FLOWS,
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
        }
    }
}

/// `[[vip]]`: one balanced service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipConfig {
    /// Unique name; defaults to `<address>:<port>/<protocol>` (IPv6 in
    /// brackets).
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// In file order; at least one.
    pub backends: Vec<BackendConfig>,
}

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number the datapath matches.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// `[[vip.backend]]`: a real server behind a VIP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendConfig {
    /// Same address family as the VIP.
    pub address: IpAddr,
    /// 0..=65535; 0 = drained (no new flows).
    pub weight: u32,
    /// Static MAC; `None`: learned from the neighbour table.
    #[serde(serialize_with = "serialize_mac")]
    pub mac: Option<[u8; 6]>,
}

/// A configuration error at a position in a file.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {field}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted path such as `vip[1].backend[0].address`; `(file)` when the
    /// file cannot be read, `(document)` when no field applies.
    pub field: String,
    pub message: String,
}

/// Reads and validates the configuration file `file`.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_owned(),
        line: 1,
        column: 1,
        field: "(file)".to_owned(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse(file, &text)
}

/// Parses and validates `text`; `file` only appears in errors.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let source = Source { file, text };
    let document = toml_edit::ImDocument::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        source.error(offset, syntax_field(text, offset), clean(e.message()))
    })?;
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (offset, field) = serde_field(&document, e.span(), e.message());
        source.error(offset, field, clean(e.message()))
    })?;
    source.validate(raw)
}

// ---------------------------------------------------------------------------
// What serde reads. Every value the checks may complain about is Spanned.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    datapath: Option<RawDatapath>,
    #[serde(default)]
    vip: Vec<Spanned<RawVip>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    interface: Spanned<String>,
    mac: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatapath {
    ring_size: Option<Spanned<u32>>,
    max_flows: Option<Spanned<u32>>,
    pin_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    name: Option<Spanned<String>>,
    address: Spanned<String>,
    port: Spanned<u16>,
    protocol: Protocol,
    #[serde(default)]
    backend: Vec<RawBackend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
    mac: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// Validation.

/// The text being parsed, for turning byte offsets into errors.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(self.text, offset);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the value `at`.
    fn at<T>(
        &self,
        at: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error(at.span().start, field, message)
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let node = self.node(raw.node)?;
        let (datapath, explicit_ring_size) = self.datapath(raw.datapath)?;
        if raw.vip.is_empty() {
            return Err(self.error(0, "vip", "at least one [[vip]] is required"));
        }

        let mut vips: Vec<VipConfig> = Vec::with_capacity(raw.vip.len());
        // (address, port, protocol) and name -> index of the first VIP.
        let mut services: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        let mut names: HashMap<String, usize> = HashMap::new();
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
            let vip = self.vip(raw_vip, &path, &mut total_backends)?;
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
        Ok(Config {
            node,
            datapath,
            vips,
        })
    }

    /// One `[[vip]]` on its own; `total_backends` counts backends over all
    /// VIPs so far.
    fn vip(
        &self,
        spanned: &Spanned<RawVip>,
        path: &str,
        total_backends: &mut usize,
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
        Ok(VipConfig {
            name,
            address,
            port,
            protocol: raw.protocol,
            backends,
        })
    }

    fn node(&self, raw: RawNode) -> Result<NodeConfig, ConfigError> {
        let name = raw.name.get_ref();
        let name_ok = (1..=MAX_NODE_NAME).contains(&name.len())
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
            && name != "."
            && name != "..";
        if !name_ok {
            return Err(self.at(
                &raw.name,
                "node.name",
                format!(
                    "must be 1..={MAX_NODE_NAME} characters of A-Z a-z 0-9 _ . - (not `.` or `..`)"
                ),
            ));
        }
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
        Ok(NodeConfig {
            name: name.clone(),
            interface: interface.clone(),
            mac: self.mac(raw.mac.as_ref(), "node.mac")?,
        })
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
    fn address(&self, raw: &Spanned<String>, field: &str) -> Result<IpAddr, ConfigError> {
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

    fn mac(
        &self,
        raw: Option<&Spanned<String>>,
        field: &str,
    ) -> Result<Option<[u8; 6]>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mac = parse_mac(raw.get_ref()).ok_or_else(|| {
            self.at(
                raw,
                field,
                format!(
                    "`{}` is not a MAC address (six hex octets separated by `:`, e.g. 02:00:00:00:00:01)",
                    raw.get_ref()
                ),
            )
        })?;
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(self.at(raw, field, "must be a unicast MAC address, not zero"));
        }
        Ok(Some(mac))
    }
}

/// Checks an explicit VIP name; it is a label in status output and metrics.
fn check_vip_name(name: &str) -> Result<(), String> {
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

/// Parses `aa:bb:cc:dd:ee:ff` (hex digits in either case).
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Writes a MAC the way it is configured, `02:00:00:00:00:01`.
fn serialize_mac<S: Serializer>(mac: &Option<[u8; 6]>, serializer: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(m) => serializer.serialize_some(&format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )),
        None => serializer.serialize_none(),
    }
}

// ---------------------------------------------------------------------------
// Positions and field names for errors of the TOML parser and of serde.

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The toml crate's messages may span lines; errors are one line.
fn clean(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A table, key or value of the document: where it is and its dotted path
/// (`""` for the root table).
struct Node {
    span: Range<usize>,
    path: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The root, a `[table]` or an element of an `[[array]]`.
    Table,
    InlineTable,
    Key,
    Value,
}

/// Every table, key and value of `document`.
fn nodes(document: &toml_edit::ImDocument<&str>) -> Vec<Node> {
    let mut out = Vec::new();
    collect_table(document.as_table(), "", &mut out);
    out
}

/// The position and field of a serde error with byte span `span`.
fn serde_field(
    document: &toml_edit::ImDocument<&str>,
    span: Option<Range<usize>>,
    message: &str,
) -> (usize, String) {
    let nodes = nodes(document);
    // "missing field `x`" points at the whole table that lacks it.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        let table = span
            .as_ref()
            .and_then(|s| {
                nodes
                    .iter()
                    .find(|n| n.kind != Kind::Key && n.kind != Kind::Value && n.span == *s)
            })
            .map_or("", |n| n.path.as_str());
        return (span.map_or(0, |s| s.start), join(table, missing));
    }
    let Some(span) = span else {
        return (0, DOCUMENT.to_owned());
    };
    // The smallest key, value or table around the error is the field.
    let field = nodes
        .iter()
        .filter(|n| n.span.start <= span.start && span.start < n.span.end.max(n.span.start + 1))
        .min_by_key(|n| n.span.end - n.span.start)
        .map_or("", |n| n.path.as_str());
    (span.start, or_document(field))
}

/// Best guess at the field of a syntax error at `offset`: the key being
/// written on that line inside the last table opened before it.
fn syntax_field(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim_start();
    if line.starts_with('[') {
        // A broken table header: name what it seems to open.
        let name = line.trim_start_matches('[').split(']').next().unwrap_or("");
        return or_document(name.trim());
    }
    let Ok(before) = toml_edit::ImDocument::parse(&text[..line_start]) else {
        return DOCUMENT.to_owned();
    };
    let nodes = nodes(&before);
    let table = nodes
        .iter()
        .filter(|n| n.kind == Kind::Table)
        .max_by_key(|n| n.span.start)
        .map_or("", |n| n.path.as_str());
    // The key being written: up to `=`, or the first word.
    let key = match line.split_once('=') {
        Some((key, _)) => key.trim(),
        None => line.split_whitespace().next().unwrap_or(""),
    };
    if key.is_empty() {
        or_document(table)
    } else {
        join(table, key)
    }
}

/// The field of errors that concern no particular field.
const DOCUMENT: &str = "(document)";

fn or_document(path: &str) -> String {
    if path.is_empty() { DOCUMENT } else { path }.to_owned()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn collect_table(table: &toml_edit::Table, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = table.span() {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: Kind::Table,
        });
    }
    for (key, item) in table.iter() {
        let path = join(path, key);
        collect_key(table.key(key), &path, out);
        match item {
            toml_edit::Item::Value(value) => collect_value(value, &path, out),
            toml_edit::Item::Table(t) => collect_table(t, &path, out),
            toml_edit::Item::ArrayOfTables(array) => {
                for (i, t) in array.iter().enumerate() {
                    collect_table(t, &format!("{path}[{i}]"), out);
                }
            }
            toml_edit::Item::None => {}
        }
    }
}

fn collect_key(key: Option<&toml_edit::Key>, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = key.and_then(toml_edit::Key::span) {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: Kind::Key,
        });
    }
}

fn collect_value(value: &toml_edit::Value, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = value.span() {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: if value.is_inline_table() {
                Kind::InlineTable
            } else {
                Kind::Value
            },
        });
    }
    match value {
        toml_edit::Value::Array(array) => {
            for (i, v) in array.iter().enumerate() {
                collect_value(v, &format!("{path}[{i}]"), out);
            }
        }
        toml_edit::Value::InlineTable(table) => {
            for (key, v) in table.iter() {
                let path = join(path, key);
                collect_key(table.key(key), &path, out);
                collect_value(v, &path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Minimal valid file; line numbers matter to the tests below:
    /// 1 [node], 2 name, 3 interface, 5 [[vip]], 6 address, 7 port,
    /// 8 protocol, 9 [[vip.backend]], 10 address.
    const BASE: &str = r#"[node]
name = "lb1"
interface = "eth0"

[[vip]]
address = "198.18.0.100"
port = 80
protocol = "tcp"
[[vip.backend]]
address = "198.18.0.11"
"#;

    fn file() -> &'static Path {
        Path::new("/etc/ha/ha.toml")
    }

    fn ok(text: &str) -> Config {
        parse(file(), text).unwrap_or_else(|e| panic!("unexpected error: {e}"))
    }

    fn err(text: &str) -> ConfigError {
        match parse(file(), text) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the error's position and field, and that its message
    /// contains `needle`.
    #[track_caller]
    fn check(text: &str, line: usize, column: usize, field: &str, needle: &str) {
        let e = err(text);
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (line, column, field),
            "{e}"
        );
        assert!(e.message.contains(needle), "{e}");
        assert_eq!(e.file, file());
    }

    /// BASE with the first occurrence of `from` replaced by `to`.
    fn base_with(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn config_full_example() {
        let text = r#"# an example with every field
[node]
name = "lb1"
interface = "eth0"
mac = "02:00:00:00:00:0A"

[datapath]
ring_size = 251
max_flows = 1024
pin_dir = "/run/ha/bpf"

[[vip]]
name = "web"
address = "198.18.0.100"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.0.12"
  weight = 3
  mac = "02:00:00:00:00:12"

[[vip]]
address = "2001:2::100"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "2001:2::11"
  weight = 0
"#;
        let want = Config {
            node: NodeConfig {
                name: "lb1".into(),
                interface: "eth0".into(),
                mac: Some([2, 0, 0, 0, 0, 0x0a]),
            },
            datapath: DatapathConfig {
                ring_size: 251,
                max_flows: 1024,
                pin_dir: PathBuf::from("/run/ha/bpf"),
            },
            vips: vec![
                VipConfig {
                    name: "web".into(),
                    address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
                    port: 80,
                    protocol: Protocol::Tcp,
                    backends: vec![
                        BackendConfig {
                            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)),
                            weight: 1,
                            mac: None,
                        },
                        BackendConfig {
                            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 12)),
                            weight: 3,
                            mac: Some([2, 0, 0, 0, 0, 0x12]),
                        },
                    ],
                },
                VipConfig {
                    name: "[2001:2::100]:53/udp".into(),
                    address: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100)),
                    port: 53,
                    protocol: Protocol::Udp,
                    backends: vec![BackendConfig {
                        address: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11)),
                        weight: 0,
                        mac: None,
                    }],
                },
            ],
        };
        assert_eq!(ok(text), want);
    }

    #[test]
    fn config_defaults() {
        let config = ok(BASE);
        assert_eq!(config.node.mac, None);
        assert_eq!(config.datapath, DatapathConfig::default());
        assert_eq!(config.datapath.ring_size, DEFAULT_RING_SIZE);
        assert_eq!(config.datapath.max_flows, DEFAULT_MAX_FLOWS);
        assert_eq!(config.datapath.pin_dir, Path::new("/sys/fs/bpf/ha"));
        assert_eq!(config.vips[0].name, "198.18.0.100:80/tcp");
        assert_eq!(config.vips[0].backends[0].weight, 1);
        assert_eq!(config.vips[0].backends[0].mac, None);
        // An empty [datapath] table keeps the defaults too.
        let config = ok(&format!("[datapath]\n{BASE}"));
        assert_eq!(config.datapath, DatapathConfig::default());
    }

    #[test]
    fn config_inline_tables() {
        let text = r#"node = { name = "lb1", interface = "eth0" }
vip = [{ address = "198.18.0.100", port = 80, protocol = "tcp", backend = [{ address = "198.18.0.11" }] }]
"#;
        assert_eq!(ok(text), ok(BASE));
        check(
            "node = { name = \"lb1\" }\n",
            1,
            8,
            "node.interface",
            "missing field",
        );
    }

    #[test]
    fn config_protocol() {
        assert_eq!(Protocol::Tcp.number(), PROTO_TCP);
        assert_eq!(Protocol::Udp.number(), PROTO_UDP);
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
        assert_eq!(Protocol::Udp.to_string(), "udp");
        let config = ok(&base_with("\"tcp\"", "\"udp\""));
        assert_eq!(config.vips[0].protocol, Protocol::Udp);
        assert_eq!(config.vips[0].name, "198.18.0.100:80/udp");
    }

    #[test]
    fn config_display() {
        let e = err(&base_with("port = 80", "port = 0"));
        assert_eq!(
            e.to_string(),
            "/etc/ha/ha.toml:7:8: vip[0].port: must be 1..=65535"
        );
    }

    #[test]
    fn config_serializes_to_json() {
        let config = ok(&base_with("eth0\"", "eth0\"\nmac = \"02:AB:00:00:00:01\""));
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["node"]["mac"], "02:ab:00:00:00:01");
        assert_eq!(json["vips"][0]["protocol"], "tcp");
        assert_eq!(json["vips"][0]["address"], "198.18.0.100");
        assert_eq!(
            json["vips"][0]["backends"][0]["mac"],
            serde_json::Value::Null
        );
        assert_eq!(json["datapath"]["pin_dir"], "/sys/fs/bpf/ha");
    }

    #[test]
    fn config_syntax_error() {
        check(
            &base_with("name = \"lb1\"", "name = \"lb1"),
            2,
            12,
            "node.name",
            "",
        );
        check(
            &base_with("port = 80", "port = = 80"),
            7,
            8,
            "vip[0].port",
            "",
        );
        check(&base_with("[[vip]]", "[[vip]"), 5, 6, "vip", "");
        // A key with characters a bare key may not have.
        check(
            &base_with("port = 80", "pört = 80"),
            7,
            2,
            "vip[0].pört",
            "",
        );
        check("[node\n", 1, 6, "node", "");
    }

    #[test]
    fn config_duplicate_key_is_a_syntax_error() {
        let e = err(&base_with("port = 80", "port = 80\nport = 81"));
        assert_eq!((e.line, e.field.as_str()), (8, "vip[0].port"), "{e}");
    }

    #[test]
    fn config_unknown_field() {
        check(
            &base_with("interface", "interfase"),
            3,
            1,
            "node.interfase",
            "unknown field `interfase`",
        );
        check(
            &base_with("port = 80", "port = 80\nmode = \"dsr\""),
            8,
            1,
            "vip[0].mode",
            "unknown field `mode`",
        );
        check(
            &format!("{BASE}weigth = 2\n"),
            11,
            1,
            "vip[0].backend[0].weigth",
            "unknown field",
        );
        check(
            &format!("[cluster]\npeers = []\n{BASE}"),
            1,
            2,
            "cluster",
            "unknown field `cluster`",
        );
    }

    #[test]
    fn config_missing_field() {
        check(
            &base_with("name = \"lb1\"\n", ""),
            1,
            1,
            "node.name",
            "missing field `name`",
        );
        check(
            &base_with("protocol = \"tcp\"\n", ""),
            5,
            1,
            "vip[0].protocol",
            "missing field `protocol`",
        );
        check(
            &base_with("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n", ""),
            1,
            1,
            "node",
            "missing field `node`",
        );
    }

    #[test]
    fn config_wrong_type() {
        check(
            &base_with("port = 80", "port = \"80\""),
            7,
            8,
            "vip[0].port",
            "invalid type",
        );
        check(
            &base_with("name = \"lb1\"", "name = 1"),
            2,
            8,
            "node.name",
            "invalid type",
        );
        check(
            &base_with("port = 80", "port = 65536"),
            7,
            8,
            "vip[0].port",
            "65536",
        );
        check(
            &format!("{BASE}weight = -1\n"),
            11,
            10,
            "vip[0].backend[0].weight",
            "-1",
        );
        check(
            &base_with("\"tcp\"", "\"sctp\""),
            8,
            12,
            "vip[0].protocol",
            "unknown variant `sctp`",
        );
        check(
            &BASE.replace(
                "[[vip.backend]]\naddress = \"198.18.0.11\"\n",
                "backend = 3\n",
            ),
            9,
            11,
            "vip[0].backend",
            "invalid type",
        );
    }

    #[test]
    fn config_node_name() {
        for bad in ["", "lb/1", "lb 1", ".", "..", "ä", &"x".repeat(33)] {
            check(
                &base_with("\"lb1\"", &format!("\"{bad}\"")),
                2,
                8,
                "node.name",
                "must be 1..=32",
            );
        }
        for good in ["a", "lb-1.example_2", &"x".repeat(32)] {
            ok(&base_with("\"lb1\"", &format!("\"{good}\"")));
        }
    }

    #[test]
    fn config_node_interface() {
        for bad in ["", "eth/0", "eth 0", "eth0:1", "..", &"e".repeat(16)] {
            check(
                &base_with("\"eth0\"", &format!("\"{bad}\"")),
                3,
                13,
                "node.interface",
                "must be 1..=15",
            );
        }
        ok(&base_with("\"eth0\"", "\"veth-lb1.100\""));
    }

    #[test]
    fn config_bad_mac() {
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02-00-00-00-00-01",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:01",
            "",
        ] {
            check(
                &base_with("\"eth0\"", &format!("\"eth0\"\nmac = \"{bad}\"")),
                4,
                7,
                "node.mac",
                "is not a MAC address",
            );
        }
        for bad in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            check(
                &base_with("\"eth0\"", &format!("\"eth0\"\nmac = \"{bad}\"")),
                4,
                7,
                "node.mac",
                "unicast",
            );
        }
        check(
            &format!("{BASE}mac = \"02:00:00:00:00\"\n"),
            11,
            7,
            "vip[0].backend[0].mac",
            "is not a MAC address",
        );
    }

    #[test]
    fn config_datapath_values() {
        let with = |line: &str| format!("[datapath]\n{line}\n{BASE}");
        check(
            &with("ring_size = 65536"),
            2,
            13,
            "datapath.ring_size",
            "not prime",
        );
        check(
            &with("ring_size = 65536"),
            2,
            13,
            "datapath.ring_size",
            "65537",
        );
        check(
            &with("ring_size = 5"),
            2,
            13,
            "datapath.ring_size",
            "must be 7..=",
        );
        check(
            &with("ring_size = 1048583"),
            2,
            13,
            "datapath.ring_size",
            "must be 7..=",
        );
        check(
            &with("max_flows = 0"),
            2,
            13,
            "datapath.max_flows",
            "must be 1..=16777216",
        );
        check(
            &with("max_flows = 16777217"),
            2,
            13,
            "datapath.max_flows",
            "must be 1..=",
        );
        check(
            &with("pin_dir = \"bpf/ha\""),
            2,
            11,
            "datapath.pin_dir",
            "absolute",
        );
        check(
            &with("pin_dir = \"\""),
            2,
            11,
            "datapath.pin_dir",
            "absolute",
        );
        assert_eq!(ok(&with("ring_size = 7")).datapath.ring_size, 7);
        assert_eq!(
            ok(&with(&format!("ring_size = {MAX_RING_SIZE}")))
                .datapath
                .ring_size,
            MAX_RING_SIZE
        );
        assert_eq!(
            ok(&with("max_flows = 16777216")).datapath.max_flows,
            16_777_216
        );
    }

    #[test]
    fn config_ring_size_larger_than_backends() {
        let mut text = format!("[datapath]\nring_size = 7\n{BASE}");
        for i in 12..=16 {
            text += &format!("[[vip.backend]]\naddress = \"198.18.0.{i}\"\n");
        }
        // 6 backends fit in a ring of 7, 7 do not.
        ok(&text);
        text += "[[vip.backend]]\naddress = \"198.18.0.17\"\n";
        check(
            &text,
            2,
            13,
            "datapath.ring_size",
            "larger than the 7 backends of vip[0]",
        );
    }

    #[test]
    fn config_no_vip() {
        check(
            "[node]\nname = \"lb1\"\ninterface = \"eth0\"\n",
            1,
            1,
            "vip",
            "at least one [[vip]]",
        );
    }

    #[test]
    fn config_vip_needs_backend() {
        let text = BASE.replace("[[vip.backend]]\naddress = \"198.18.0.11\"\n", "");
        check(
            &text,
            5,
            1,
            "vip[0].backend",
            "at least one [[vip.backend]]",
        );
    }

    #[test]
    fn config_vip_address() {
        for (bad, needle) in [
            ("198.18.0.300", "is not an IPv4 or IPv6 address"),
            ("198.18.0.100:80", "is not an IPv4 or IPv6 address"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("224.0.0.18", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:198.18.0.100", "IPv4-mapped"),
        ] {
            check(
                &base_with("\"198.18.0.100\"", &format!("\"{bad}\"")),
                6,
                11,
                "vip[0].address",
                needle,
            );
        }
        check(
            &format!("{BASE}[[vip.backend]]\naddress = \"::1\"\n"),
            12,
            11,
            "vip[0].backend[1].address",
            "loopback",
        );
    }

    #[test]
    fn config_port_zero() {
        check(
            &base_with("port = 80", "port = 0"),
            7,
            8,
            "vip[0].port",
            "must be 1..=65535",
        );
    }

    /// A second VIP appended to BASE; it starts on line 11.
    fn second_vip(address: &str, port: u16, protocol: &str, extra: &str) -> String {
        format!(
            "{BASE}[[vip]]\n{extra}address = \"{address}\"\nport = {port}\nprotocol = \"{protocol}\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
        )
    }

    #[test]
    fn config_duplicate_vip() {
        check(
            &second_vip("198.18.0.100", 80, "tcp", ""),
            12,
            11,
            "vip[1].address",
            "duplicate VIP 198.18.0.100:80/tcp (also vip[0])",
        );
        // Another port or protocol is another service.
        assert_eq!(ok(&second_vip("198.18.0.100", 80, "udp", "")).vips.len(), 2);
        assert_eq!(
            ok(&second_vip("198.18.0.100", 443, "tcp", "")).vips.len(),
            2
        );
    }

    #[test]
    fn config_duplicate_vip_name() {
        let named = base_with("[[vip]]\n", "[[vip]]\nname = \"web\"\n");
        let text = format!(
            "{named}[[vip]]\nname = \"web\"\naddress = \"198.18.0.101\"\nport = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
        );
        check(
            &text,
            13,
            8,
            "vip[1].name",
            "duplicate VIP name `web` (also vip[0])",
        );
        // An explicit name may not take another VIP's default name.
        let text = second_vip(
            "198.18.0.101",
            80,
            "tcp",
            "name = \"198.18.0.100:80/tcp\"\n",
        );
        check(&text, 12, 8, "vip[1].name", "duplicate VIP name");
        check(
            &base_with("[[vip]]\n", "[[vip]]\nname = \"a b\"\n"),
            6,
            8,
            "vip[0].name",
            "whitespace",
        );
        check(
            &base_with("[[vip]]\n", "[[vip]]\nname = \"\"\n"),
            6,
            8,
            "vip[0].name",
            "1..=64",
        );
    }

    #[test]
    fn config_too_many_vips() {
        let max = (MAX_VIPS - 1) as usize;
        let mut text = String::from("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n");
        for port in 1..=max {
            text += &format!(
                "[[vip]]\naddress = \"198.18.0.100\"\nport = {port}\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
            );
        }
        assert_eq!(ok(&text).vips.len(), max);
        text += "[[vip]]\naddress = \"198.18.0.100\"\nport = 9999\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n";
        check(
            &text,
            4 + 6 * max,
            1,
            &format!("vip[{max}]"),
            &format!("at most {max} VIPs"),
        );
    }

    #[test]
    fn config_too_many_backends() {
        let max = (MAX_BACKENDS - 1) as usize;
        let backend = |i: usize| {
            format!(
                "[[vip.backend]]\naddress = \"198.18.{}.{}\"\n",
                i / 250,
                i % 250 + 1
            )
        };
        // All but 10 backends in the first VIP, the rest in a second one.
        let mut text = String::from("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n");
        text += "[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n";
        for i in 0..max - 10 {
            text += &backend(i);
        }
        text += "[[vip]]\naddress = \"198.18.0.100\"\nport = 81\nprotocol = \"tcp\"\n";
        for i in 0..10 {
            text += &backend(i);
        }
        let config = ok(&text);
        assert_eq!(
            config.vips.iter().map(|v| v.backends.len()).sum::<usize>(),
            max
        );
        text += &backend(10);
        let line = 3 + 4 + 2 * (max - 10) + 4 + 2 * 10 + 2;
        check(
            &text,
            line,
            11,
            "vip[1].backend[10].address",
            &format!("at most {max} backends"),
        );
    }

    #[test]
    fn config_duplicate_backend() {
        check(
            &format!("{BASE}[[vip.backend]]\naddress = \"198.18.0.11\"\n"),
            12,
            11,
            "vip[0].backend[1].address",
            "duplicate backend 198.18.0.11 (also vip[0].backend[0])",
        );
        // The same backend behind two VIPs is fine.
        assert_eq!(ok(&second_vip("198.18.0.101", 80, "tcp", "")).vips.len(), 2);
    }

    #[test]
    fn config_family_mismatch() {
        check(
            &format!("{BASE}[[vip.backend]]\naddress = \"2001:2::11\"\n"),
            12,
            11,
            "vip[0].backend[1].address",
            "IPv6 backend for an IPv4 VIP",
        );
        let text = second_vip("2001:2::100", 80, "tcp", "");
        check(
            &text,
            16,
            11,
            "vip[1].backend[0].address",
            "IPv4 backend for an IPv6 VIP",
        );
    }

    #[test]
    fn config_weight() {
        check(
            &format!("{BASE}weight = 65536\n"),
            11,
            10,
            "vip[0].backend[0].weight",
            "must be 0..=65535",
        );
        let config = ok(&format!("{BASE}weight = 65535\n"));
        assert_eq!(config.vips[0].backends[0].weight, 65535);
    }

    #[test]
    fn config_columns_count_characters() {
        // "é" is two bytes but one column.
        let text = BASE.replace(
            "[node]\nname = \"lb1\"\ninterface = \"eth0\"\n",
            "node = { name = \"lb1\", interface = \"é\", mac = \"x\" }\n",
        );
        check(&text, 1, 47, "node.mac", "is not a MAC address");
        assert_eq!(line_column("aé\nbc", 3), (1, 3));
        assert_eq!(line_column("aé\nbc", 5), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn config_load() {
        let missing = Path::new("/nonexistent/ha.toml");
        let e = load(missing).unwrap_err();
        assert_eq!(
            (e.file.as_path(), e.line, e.column, e.field.as_str()),
            (missing, 1, 1, "(file)")
        );
        assert!(e.message.contains("cannot read"), "{e}");

        let path = std::env::temp_dir().join(format!("ha-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, BASE).unwrap();
        let loaded = load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.unwrap(), ok(BASE));
    }
}

#[cfg(test)]
mod packaged_example {
    /// The example shipped in packaging/ must stay valid.
    #[test]
    fn packaged_example_config_is_valid() {
        let path =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/ha.toml"));
        let config = super::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.vips.len(), 2);
        assert_eq!(config.vips[0].backends[1].weight, 2);
    }
}
