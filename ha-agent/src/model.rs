//! The small vocabulary several modules share: a VIP's transport protocol,
//! MAC addresses, the stored form of addresses and VIP keys, and the key of
//! one backend of one VIP. It lives here, below everything else, so that
//! config, the desired state, the id allocator, health checks, netlink and
//! the reports can all use it without importing each other.

use std::{fmt, net::IpAddr, str::FromStr};

use ha_common::{Addr, PROTO_TCP, PROTO_UDP, VipKey, v4_mapped};
use serde::{Deserialize, Serialize, Serializer};

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

/// Identifies a backend of a VIP: index of the VIP in `config.vips` and
/// index of the backend in `vip.backends`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey {
    pub vip: usize,
    pub backend: usize,
}

/// An Ethernet address, written `02:00:00:00:00:01` in the config, logs and
/// reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Unicast (group bit clear) and not all zero: an address a frame can
    /// be sent to.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The text is not six two-digit hex octets separated by `:`.
#[derive(Debug, PartialEq, Eq)]
pub struct MacParseError;

impl FromStr for Mac {
    type Err = MacParseError;

    /// Parses `aa:bb:cc:dd:ee:ff` (hex digits in either case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut mac = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or(MacParseError)?;
            if part.len() != 2 {
                return Err(MacParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        match parts.next() {
            None => Ok(Mac(mac)),
            Some(_) => Err(MacParseError),
        }
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The stored form of an address (IPv4 as IPv4-mapped IPv6).
pub fn addr_bytes(addr: IpAddr) -> Addr {
    match addr {
        IpAddr::V4(v4) => v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The VIPS map key of a VIP.
pub fn vip_key(address: IpAddr, port: u16, protocol: Protocol) -> VipKey {
    VipKey {
        addr: addr_bytes(address),
        port_be: port.to_be(),
        proto: protocol.number(),
        _pad: 0,
    }
}

#[cfg(test)]
mod tests;
