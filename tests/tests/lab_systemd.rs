//! The agent's side of systemd's notify protocol, end to end (run as
//! root). PID 1 is not systemd on these machines, so the test plays
//! systemd: it binds the notification socket, starts the real agent with
//! NOTIFY_SOCKET and WATCHDOG_USEC as systemd would for `Type=notify` with
//! `WatchdogSec=`, and checks what arrives: READY=1 only once the datapath
//! is attached, WATCHDOG=1 pings at half the timeout, RELOADING=1 then
//! READY=1 around a reload, STOPPING=1 on SIGTERM.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::unix::net::UnixDatagram,
    path::PathBuf,
    time::{Duration, Instant},
};

use ha_tests::{
    agent::{Launch, hactl},
    dsr::DsrLab,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// WATCHDOG_USEC as systemd would pass it: the agent pings every half.
const WATCHDOG: Duration = Duration::from_millis(400);

/// The notification socket, removed with the test.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(name: &str) -> NotifySocket {
        let path = std::env::temp_dir().join(format!("ha-lab-notify-{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket { socket, path }
    }

    /// Every message that arrives within `wait`, with its arrival time.
    fn collect(&self, wait: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + wait;
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                messages.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
        messages
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn with(messages: &[(Instant, String)], line: &str) -> Vec<Instant> {
    messages
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == line))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn the_agent_tells_systemd_ready_watchdog_reloading_and_stopping() {
    let dsr = DsrLab::new(IpAddr::V4(VIP), &["b1"], "").expect("build the lab");
    let notify = NotifySocket::bind(dsr.lab.switch().name());
    let launch = Launch {
        env: vec![
            ("NOTIFY_SOCKET".into(), notify.path.clone().into()),
            (
                "WATCHDOG_USEC".into(),
                WATCHDOG.as_micros().to_string().into(),
            ),
        ],
        ..Launch::default()
    };
    let mut agent = dsr
        .start_agent_with("lb", false, &launch)
        .expect("start the agent");

    // READY=1 with a status line, sent after the datapath was attached
    // (start_agent_with waited for that), then the watchdog pings.
    let started = notify.collect(Duration::from_millis(1500));
    let ready = with(&started, "READY=1");
    assert_eq!(ready.len(), 1, "{started:?}");
    assert!(
        started
            .iter()
            .any(|(_, m)| m.contains("STATUS=1 VIPs on eth0, XDP")),
        "{started:?}"
    );
    assert!(agent.log().contains("datapath attached"));
    let pings = with(&started, "WATCHDOG=1");
    assert!(pings.len() >= 3, "too few watchdog pings: {started:?}");
    let widest = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("two pings");
    // Pinged every WATCHDOG/2: a gap of a whole WATCHDOG would have made
    // systemd kill the agent.
    assert!(
        widest < WATCHDOG,
        "watchdog gap {widest:?} of a {WATCHDOG:?} timeout"
    );

    // A reload: RELOADING=1 (with MONOTONIC_USEC), then READY=1.
    let socket = agent.control_socket();
    let answer =
        hactl(&["reload", "--socket", &socket.to_string_lossy()], false).expect("hactl reload");
    assert_eq!(answer.trim(), "reloaded: no change");
    let reloaded = notify.collect(Duration::from_millis(500));
    let reloading = reloaded
        .iter()
        .find(|(_, m)| m.lines().any(|l| l == "RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1: {reloaded:?}"));
    assert!(reloading.1.contains("MONOTONIC_USEC="), "{reloading:?}");
    let ready_again = with(&reloaded, "READY=1");
    assert!(
        ready_again.len() == 1 && ready_again[0] >= reloading.0,
        "{reloaded:?}"
    );

    // SIGTERM: STOPPING=1 before the agent exits.
    let status = agent.stop().expect("stop the agent");
    assert!(status.success(), "{status}\n{}", agent.log());
    let stopped = notify.collect(Duration::from_millis(200));
    assert_eq!(with(&stopped, "STOPPING=1").len(), 1, "{stopped:?}");
    println!(
        "notifications: READY=1 once, {} watchdog pings in 1.5 s (widest gap {widest:?} of \
         {WATCHDOG:?}), RELOADING=1 then READY=1 on reload, STOPPING=1 on SIGTERM",
        pings.len()
    );
}
