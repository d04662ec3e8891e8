use super::*;

/// A config with one VIP whose two backends are 127.0.0.1 and
/// 127.0.0.2 (both loopback), checked on `port`. Validation rejects
/// loopback backends, so the addresses are put in after parsing.
fn two_backend_config(port: u16) -> Config {
    let text = r#"
[node]
name = "lb1"
interface = "eth0"
[health]
interval = "50ms"
timeout = "50ms"
rise = 2
fall = 2
[[vip]]
address = "198.18.0.100"
port = 80
protocol = "tcp"
  [vip.check]
  type = "tcp"
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.0.12"
"#;
    let mut config = ok(text);
    let vip = &mut config.vips[0];
    vip.backends[0].address = LOCAL4;
    vip.backends[1].address = "127.0.0.2".parse().unwrap();
    vip.check.port = port;
    config
}

#[tokio::test]
async fn spawn_checks_reports_flips_only() {
    let up = TcpListener::bind((LOCAL4, 0)).await.unwrap();
    let port = up.local_addr().unwrap().port();
    let config = two_backend_config(port);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let checks = backend_checks(&config).unwrap().spawn(&BTreeSet::new(), tx);
    assert_eq!(checks.len(), 2);

    let down = timeout(PATIENCE, rx.recv())
        .await
        .expect("no transition")
        .unwrap();
    assert_eq!(down.key, BackendKey { vip: 0, backend: 1 });
    assert!(!down.up);
    assert_eq!(
        down.cause,
        "tcp check failed 2 times in a row (last: connect: connection refused)"
    );
    // Nothing else: backend 0 stays up, backend 1 stays down.
    sleep(Duration::from_millis(500)).await;
    assert!(rx.try_recv().is_err());

    let _second = TcpListener::bind(("127.0.0.2".parse::<IpAddr>().unwrap(), port))
        .await
        .unwrap();
    let back = timeout(PATIENCE, rx.recv())
        .await
        .expect("no transition")
        .unwrap();
    assert_eq!(back.key, BackendKey { vip: 0, backend: 1 });
    assert!(back.up);
    assert_eq!(back.cause, "tcp check passed 2 times in a row");
    assert!(back.at > down.at);

    // Dropping the handle stops the checks: the sender goes away.
    drop(checks);
    let end = timeout(PATIENCE, async { while rx.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "checks still running after drop");
    drop(up);
}

#[tokio::test]
async fn spawn_checks_starting_down_reports_rise() {
    let listener = TcpListener::bind((LOCAL4, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = two_backend_config(port);
    config.vips[0].backends.truncate(1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _checks = backend_checks(&config)
        .unwrap()
        .spawn(&[BackendKey { vip: 0, backend: 0 }].into(), tx);
    let up = timeout(PATIENCE, rx.recv())
        .await
        .expect("no transition")
        .unwrap();
    assert_eq!((up.key, up.up), (BackendKey { vip: 0, backend: 0 }, true));
}

#[tokio::test]
async fn spawn_checks_skips_none() {
    let mut config = two_backend_config(closed_port(LOCAL4).await);
    config.vips[0].check.kind = CheckKind::None;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let checks = backend_checks(&config).unwrap().spawn(&BTreeSet::new(), tx);
    assert!(checks.is_empty());
    // No task holds a sender: the channel is closed at once.
    assert_eq!(timeout(PATIENCE, rx.recv()).await.unwrap(), None);
}

#[test]
fn causes() {
    let mut check = two_backend_config(80).vips[0].check.clone();
    check.rise = 1;
    check.fall = 1;
    assert_eq!(cause(&check, None), "tcp check passed once");
    assert_eq!(
        cause(&check, Some("timeout after 50ms")),
        "tcp check failed once (last: timeout after 50ms)"
    );
}
