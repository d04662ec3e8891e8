//! The udp check: a datagram gets a reply (containing `expect`, if set).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::{describe, find};

pub(super) async fn check(
    address: SocketAddr,
    send: &str,
    expect: Option<&str>,
) -> Result<(), String> {
    let local: SocketAddr = match address {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("bind: {}", describe(&e)))?;
    socket
        .connect(address)
        .await
        .map_err(|e| format!("connect: {}", describe(&e)))?;
    socket
        .send(send.as_bytes())
        .await
        .map_err(|e| format!("send: {}", describe(&e)))?;
    // A connected UDP socket reports an ICMP port unreachable as
    // ECONNREFUSED here.
    let mut reply = vec![0; 65_536];
    let n = socket
        .recv(&mut reply)
        .await
        .map_err(|e| format!("recv: {}", describe(&e)))?;
    match expect {
        Some(expect) if find(&reply[..n], expect.as_bytes()).is_none() => Err(format!(
            "reply does not contain `{}`",
            expect.escape_debug()
        )),
        _ => Ok(()),
    }
}
