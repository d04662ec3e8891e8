//! The lab's traffic tools on their own, without a load balancer (run as
//! root): `ha-lab-server` processes on two backends, the rate client and
//! long-lived connections against the backends' own addresses, and what
//! they report when a server is killed with SIGKILL.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use ha_tests::{Lab, LongLived, ServerProcess, start_rate_client};

const PORT: u16 = 8080;
const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);

fn lab() -> Lab {
    Lab::new(&["client", "b1", "b2"]).expect("build the lab")
}

#[test]
fn rate_client_and_long_lived_connections_see_a_killed_server() {
    let lab = lab();
    let client = &lab.host("client").ns;
    let mut b1 = ServerProcess::start(&lab.host("b1").ns, "b1", PORT).unwrap();
    let _b2 = ServerProcess::start(&lab.host("b2").ns, "b2", PORT).unwrap();
    let b1_addr = SocketAddr::new(IpAddr::V4(lab.host("b1").ipv4), PORT);
    // b2 over IPv6: the server listens dual-stack.
    let b2_addr = SocketAddr::new(IpAddr::V6(lab.host("b2").ipv6), PORT);

    // Healthy: 100/s for 2 s, and meanwhile 5 long-lived connections for 1 s.
    let began = Instant::now();
    let long = LongLived::start(client, b1_addr, 5, Duration::from_millis(10)).unwrap();
    let rate = start_rate_client(
        client,
        b1_addr,
        100,
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    thread::sleep(Duration::from_secs(1));
    let report = long.stop();
    let run = rate.join().expect("rate client");
    let healthy_took = began.elapsed();

    assert_eq!(run.attempts.len(), 200);
    assert_eq!(run.failures(), 0, "errors: {:?}", run.errors());
    assert_eq!(run.last_failure(), None);
    assert_eq!(run.answered_by_after("b1", Duration::ZERO), 200);
    for (i, attempt) in run.attempts.iter().enumerate() {
        let due = Duration::from_millis(10 * i as u64);
        assert!(
            attempt.at >= due && attempt.at < due + Duration::from_millis(100),
            "attempt {i} due at {due:?} started at {:?}",
            attempt.at
        );
    }
    assert_eq!(report.per_connection.len(), 5);
    for c in &report.per_connection {
        assert_eq!(c.backend, "b1");
        assert_eq!(c.broke, None, "{c:?}");
        assert!(c.exchanges >= 10, "{c:?}");
    }
    let exchanges: Vec<u64> = report.per_connection.iter().map(|c| c.exchanges).collect();
    println!(
        "healthy: {:?} in {healthy_took:?}, exchanges {exchanges:?}",
        run.by_backend()
    );

    // Kill b1's server while connections to both backends are exchanging.
    let to_b1 = LongLived::start(client, b1_addr, 5, Duration::from_millis(10)).unwrap();
    let to_b2 = LongLived::start(client, b2_addr, 5, Duration::from_millis(10)).unwrap();
    thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    b1.kill();
    b1.kill(); // idempotent
    assert_eq!(b1.pid(), None);
    let after_kill = start_rate_client(
        client,
        b1_addr,
        100,
        Duration::from_millis(500),
        Duration::from_millis(500),
    )
    .join()
    .expect("rate client");
    let (on_b1, on_b2) = (to_b1.stop(), to_b2.stop());

    assert_eq!(after_kill.attempts.len(), 50);
    assert_eq!(
        after_kill.failures(),
        50,
        "connections to a dead server fail: {:?}",
        after_kill.by_backend()
    );
    assert!(after_kill.last_failure().is_some());
    assert_eq!(after_kill.answered_by_after("b1", Duration::ZERO), 0);
    let kill_offset = killed_at - on_b1.started;
    for c in &on_b1.per_connection {
        let (when, why) = c
            .broke
            .as_ref()
            .unwrap_or_else(|| panic!("not broken: {c:?}"));
        assert!(!why.is_empty());
        assert!(
            *when >= kill_offset && *when < kill_offset + Duration::from_millis(1500),
            "broke at {when:?}, server killed at {kill_offset:?}: {why}"
        );
        assert!(c.exchanges > 0, "{c:?}");
    }
    assert!(on_b1.broken_on_other_backends("b1").is_empty());
    assert_eq!(on_b2.by_backend().get("b2"), Some(&5));
    assert!(
        on_b2.broken_on_other_backends("b1").is_empty(),
        "{:?}",
        on_b2.per_connection
    );
    println!(
        "after the kill: new connections {:?}; long-lived to b1 broke: {:?}; to b2: {} exchanges, none broken",
        after_kill.errors(),
        on_b1
            .per_connection
            .iter()
            .map(|c| c.broke.clone().unwrap())
            .collect::<Vec<_>>(),
        on_b2
            .per_connection
            .iter()
            .map(|c| c.exchanges)
            .sum::<u64>()
    );
}

#[test]
fn attempts_to_a_cut_link_time_out_without_delaying_the_others() {
    let lab = lab();
    let b1 = lab.host("b1");
    let _server = ServerProcess::start(&b1.ns, "b1", PORT).unwrap();
    b1.ns.exec(&["ip", "link", "set", "eth0", "down"]).unwrap();
    let target = SocketAddr::new(IpAddr::V4(b1.ipv4), PORT);
    let began = Instant::now();
    let run = start_rate_client(
        &lab.host("client").ns,
        target,
        100,
        Duration::from_secs(1),
        Duration::from_millis(500),
    )
    .join()
    .unwrap();
    let took = began.elapsed();
    assert_eq!(run.attempts.len(), 100);
    assert_eq!(run.failures(), 100, "{:?}", run.by_backend());
    // Up to 50 attempts wait for their timeout at once; each still starts
    // on time.
    for (i, attempt) in run.attempts.iter().enumerate() {
        let due = Duration::from_millis(10 * i as u64);
        assert!(
            attempt.at >= due && attempt.at < due + Duration::from_millis(100),
            "attempt {i} due at {due:?} started at {:?}",
            attempt.at
        );
    }
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    println!("link cut: {:?} in {took:?}", run.errors());
}

/// Sends one datagram from `client`'s namespace to `target` on a connected
/// socket (which takes answers from `target` only) and returns the answer.
fn udp_ask(lab: &Lab, target: SocketAddr, payload: &str) -> String {
    let payload = payload.to_owned();
    lab.host("client").ns.run(move || {
        let bind: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(bind).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        socket.connect(target).unwrap();
        socket.send(payload.as_bytes()).unwrap();
        let mut buf = [0u8; 512];
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no UDP answer from {target}: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
}

#[test]
fn lab_server_answers_on_every_address_tcp_and_udp() {
    let lab = lab();
    let b2 = lab.host("b2");
    let _server = ServerProcess::start(&b2.ns, "b2", PORT).unwrap();

    // A second server on the same port fails, and says why.
    let e = ServerProcess::start(&b2.ns, "again", PORT)
        .err()
        .expect("the port is taken");
    assert!(format!("{e:#}").contains("in use"), "{e:#}");

    // The VIPs on b2's lo, and the client sends them straight to b2's MAC,
    // as the load balancer would: the wildcard listener takes them, and UDP
    // answers leave from the VIP.
    lab.make_dsr_backend("b2", &[IpAddr::V4(VIP4), IpAddr::V6(VIP6)])
        .unwrap();
    let mac = b2.mac.map(|b| format!("{b:02x}")).join(":");
    for vip in [VIP4.to_string(), VIP6.to_string()] {
        #[rustfmt::skip]
        lab.host("client").ns
            .exec(&["ip", "neigh", "replace", &vip, "lladdr", &mac, "dev", "eth0", "nud", "permanent"])
            .unwrap();
    }

    let addresses = [
        IpAddr::V4(b2.ipv4),
        IpAddr::V6(b2.ipv6),
        IpAddr::V4(VIP4),
        IpAddr::V6(VIP6),
    ];
    for addr in addresses {
        let target = SocketAddr::new(addr, PORT);
        assert_eq!(udp_ask(&lab, target, "hello"), "b2:hello", "UDP {target}");
        let run = start_rate_client(
            &lab.host("client").ns,
            target,
            50,
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
        .join()
        .unwrap();
        assert_eq!(run.failures(), 0, "TCP {target}: {:?}", run.errors());
        assert_eq!(
            run.answered_by_after("b2", Duration::ZERO),
            5,
            "TCP {target}"
        );
    }
}
