use super::*;
use crate::cluster::shared::{HEALTH_MAGIC, HealthView, OPERATOR_MAGIC, OperatorState};

#[test]
fn an_incarnation_never_goes_back() {
    assert_eq!(next_incarnation(1_000, None), 1_000);
    assert_eq!(next_incarnation(1_000, Some(900)), 1_000);
    // The clock stepped back across the restart.
    assert_eq!(next_incarnation(1_000, Some(5_000)), 5_001);
}

#[test]
fn the_last_incarnation_is_remembered_in_its_file() {
    let file = std::env::temp_dir().join(format!("ha-incarnation-{}", std::process::id()));
    std::fs::write(&file, format!("{}\n", u64::MAX / 2)).unwrap();
    let files = [file.clone()];
    assert_eq!(remember_incarnation(&files), u64::MAX / 2 + 1);
    assert_eq!(remember_incarnation(&files), u64::MAX / 2 + 2);
    std::fs::remove_file(&file).unwrap();
}

/// Under the shipped unit the incarnation lives in the state directory:
/// a stop deletes the runtime directory (control socket and all), the
/// next start still comes up above the last incarnation, even with the
/// clock stepped back (the file holds one far in the future). Without
/// systemd it stays beside the control socket; the old place is still
/// read, so an upgrade keeps counting up.
#[test]
fn the_incarnation_survives_a_stop_in_the_state_directory() {
    let root = std::env::temp_dir().join(format!("ha-incarnation-unit-{}", std::process::id()));
    let (state, runtime) = (root.join("var/lib/ha"), root.join("run/ha"));
    let socket = runtime.join("lb1.sock");
    let files = incarnation_files("lb1", &socket, Some(state.as_os_str()));
    assert_eq!(
        files,
        [
            state.join("lb1.incarnation"),
            runtime.join("lb1.incarnation")
        ]
    );
    // The place before: beside the socket, found at the first start.
    std::fs::create_dir_all(&runtime).unwrap();
    let future = u64::MAX / 2;
    std::fs::write(runtime.join("lb1.incarnation"), format!("{future}\n")).unwrap();
    assert_eq!(remember_incarnation(&files), future + 1);
    // systemctl stop: RuntimeDirectory= is removed; start again.
    std::fs::remove_dir_all(&runtime).unwrap();
    assert_eq!(remember_incarnation(&files), future + 2);
    assert_eq!(remember_incarnation(&files), future + 3);
    // Without systemd: beside the control socket.
    assert_eq!(
        incarnation_files("lb1", &socket, None),
        [runtime.join("lb1.incarnation")]
    );
    let several = std::ffi::OsString::from(format!("{}:/elsewhere", state.display()));
    assert_eq!(
        incarnation_files("lb1", &socket, Some(&several))[0],
        state.join("lb1.incarnation")
    );
    std::fs::remove_dir_all(&root).unwrap();
}

const CLUSTER: u64 = 42;

fn key() -> Key {
    Key::from_bytes(b"shell test key ..................").unwrap()
}

/// A shell of `me` (of a cluster lb1, lb2) on a loopback socket of its
/// own, sending to nobody yet.
async fn loopback_shell(me: &str, incarnation: u64) -> Shell {
    let socket = UdpSocket::bind("[::1]:0").await.unwrap();
    let params = ClusterParams::new(me, 100, &["lb1", "lb2"], 1);
    Shell::new(socket, key(), Vec::new(), CLUSTER, params, incarnation).unwrap()
}

/// The next datagram `frames` delivers.
async fn next(frames: &mut mpsc::Receiver<(Vec<u8>, SocketAddr)>) -> (Vec<u8>, SocketAddr) {
    tokio::time::timeout(Duration::from_secs(5), frames.recv())
        .await
        .expect("a datagram within 5 s")
        .expect("the reader runs")
}

/// 500 backends of an IPv6 VIP, as peers name them.
fn five_hundred_ipv6_backends() -> std::collections::BTreeSet<(String, IpAddr)> {
    (1..=500u16)
        .map(|i| {
            let address = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 1, i);
            ("web6".to_string(), IpAddr::V6(address))
        })
        .collect()
}

/// Operator state and a health view naming 500 IPv6 backends are far
/// larger than one Ethernet frame; they still arrive whole, through the
/// reader task and `accept`, over a real loopback UDP socket pair.
#[tokio::test]
async fn five_hundred_drained_ipv6_backends_replicate() {
    let mut lb1 = loopback_shell("lb1", 2_000).await;
    let mut lb2 = loopback_shell("lb2", 1_000).await;
    lb1.peers = vec![lb2.socket.local_addr().unwrap()];
    lb2.peers = vec![lb1.socket.local_addr().unwrap()];
    let mut frames = lb2.spawn_reader();
    // lb2 takes shared state only from a life of lb1 it heard live.
    lb1.handle(Input::Tick { now: lb1.now() }).await;
    let (heartbeat, from) = next(&mut frames).await;
    assert!(matches!(
        lb2.accept(&heartbeat, from),
        Some(Received::Heartbeat(_))
    ));

    let operator = OperatorState {
        version: 1,
        origin: "lb1".into(),
        drained: five_hundred_ipv6_backends(),
        failover: None,
    };
    lb1.share(OPERATOR_MAGIC, &operator).await;
    let (frame, from) = next(&mut frames).await;
    println!(
        "operator state of 500 drained IPv6 backends: {} bytes",
        frame.len()
    );
    assert!(frame.len() > 8 * 1024, "{} bytes", frame.len());
    match lb2.accept(&frame, from) {
        Some(Received::Shared(Shared::Operator(got))) => assert_eq!(got, operator),
        _ => panic!("operator state of {} bytes not accepted", frame.len()),
    }

    let view = HealthView {
        node: "lb1".into(),
        sequence: 1,
        down: five_hundred_ipv6_backends(),
    };
    lb1.share(HEALTH_MAGIC, &view).await;
    let (frame, from) = next(&mut frames).await;
    println!(
        "health view of 500 IPv6 backends down: {} bytes",
        frame.len()
    );
    match lb2.accept(&frame, from) {
        Some(Received::Shared(Shared::Health(got))) => assert_eq!(got, view),
        _ => panic!("health view of {} bytes not accepted", frame.len()),
    }
}
