use super::*;

/// A UDP server on `address` answering every datagram with
/// `prefix` + the datagram.
async fn udp_echo(address: IpAddr, prefix: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let socket = UdpSocket::bind((address, 0)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut buf = vec![0; 65_536];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let reply = [prefix.as_bytes(), &buf[..n]].concat();
            socket.send_to(&reply, from).await.unwrap();
        }
    });
    (port, server)
}

fn udp_kind(send: &str, expect: Option<&str>) -> CheckKind {
    CheckKind::Udp {
        send: send.into(),
        expect: expect.map(str::to_owned),
    }
}

#[tokio::test]
async fn udp_echo_is_healthy() {
    let (port, server) = udp_echo(LOCAL4, "p").await;
    let t = target(LOCAL4, port);
    assert_eq!(
        check_once(&udp_kind("ing", Some("ping")), &t, PATIENCE).await,
        Ok(())
    );
    // Any reply counts without `expect`, even to an empty datagram.
    assert_eq!(check_once(&udp_kind("", None), &t, PATIENCE).await, Ok(()));
    server.abort();
    if ipv6_available().await {
        let (port, server) = udp_echo(LOCAL6, "").await;
        let t = target(LOCAL6, port);
        assert_eq!(
            check_once(&udp_kind("pong", Some("pong")), &t, PATIENCE).await,
            Ok(())
        );
        server.abort();
    }
}

#[tokio::test]
async fn udp_expect_mismatch_fails() {
    let (port, server) = udp_echo(LOCAL4, "").await;
    let t = target(LOCAL4, port);
    assert_eq!(
        check_once(&udp_kind("ping", Some("pong")), &t, PATIENCE).await,
        Err("reply does not contain `pong`".to_owned())
    );
    server.abort();
}

#[tokio::test]
async fn udp_nothing_listening_fails() {
    let socket = UdpSocket::bind((LOCAL4, 0)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    drop(socket);
    let result = check_once(
        &udp_kind("ping", None),
        &target(LOCAL4, port),
        Duration::from_secs(2),
    )
    .await;
    // Normally refused (ICMP port unreachable); a timeout if ICMP is
    // rate-limited.
    assert!(
        result == Err("recv: connection refused".to_owned())
            || result == Err("timeout after 2s".to_owned()),
        "{result:?}"
    );
}

#[tokio::test]
async fn udp_silent_server_times_out() {
    let socket = UdpSocket::bind((LOCAL4, 0)).await.unwrap();
    let t = target(LOCAL4, socket.local_addr().unwrap().port());
    assert_eq!(
        check_once(&udp_kind("ping", None), &t, Duration::from_millis(100)).await,
        Err("timeout after 100ms".to_owned())
    );
}
