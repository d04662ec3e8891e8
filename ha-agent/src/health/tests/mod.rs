//! The health checks' unit tests, one file per checker plus the
//! scheduler; shared helpers here.

mod exec;
mod http;
mod https;
mod rise_fall;
mod scheduler;
mod tcp;
mod udp;

use super::*;
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    sync::{mpsc, oneshot},
    time::{sleep, timeout},
};

use crate::config::tests::ok;

/// Generous bound for "arrives within" on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);
const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// One attempt of a check of `kind`, built as the agent builds it.
async fn check_once(kind: &CheckKind, target: &Target, timeout: Duration) -> Result<(), String> {
    Checker::new(kind, &mut crate::health::https::ClientConfigs::default())
        .expect("the check builds")
        .check(target, timeout)
        .await
}

fn target(address: IpAddr, port: u16) -> Target {
    Target {
        address,
        port,
        vip: "198.18.0.100".parse().unwrap(),
        vip_port: 80,
    }
}

/// A port on `address` that nothing listens on (bound, then closed).
async fn closed_port(address: IpAddr) -> u16 {
    let listener = TcpListener::bind((address, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether [::1] can be used here (IPv6 may be off in containers).
async fn ipv6_available() -> bool {
    let ok = TcpListener::bind((LOCAL6, 0)).await.is_ok();
    if !ok {
        eprintln!("IPv6 loopback unavailable: skipping the IPv6 part");
    }
    ok
}
