use std::{
    path::PathBuf,
    sync::{Mutex, MutexGuard, mpsc},
    time::Instant,
};

use super::*;

/// Tests that change the process environment hold this, so they never
/// see each other's NOTIFY_SOCKET or WATCHDOG_*.
static ENV: Mutex<()> = Mutex::new(());

/// Holds [`ENV`] and restores the notify variables when dropped.
struct Env {
    _lock: MutexGuard<'static, ()>,
}

impl Env {
    fn lock() -> Self {
        let lock = ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clear_all();
        Env { _lock: lock }
    }

    fn set(&self, key: &str, value: &str) {
        // SAFETY: serialised by ENV with every other test that touches
        // these variables; std's own environment lock covers the
        // readers in this process (std::env::var, Command::spawn).
        unsafe { std::env::set_var(key, value) };
    }

    fn remove(&self, key: &str) {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(key) };
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        clear_all();
    }
}

fn clear_all() {
    for key in NOTIFY_ENV {
        // SAFETY: only called with ENV held (see `Env::set`).
        unsafe { std::env::remove_var(key) };
    }
}

/// A bound Unix datagram socket in a fresh temporary directory, as
/// systemd's /run/systemd/notify.
struct Listener {
    dir: PathBuf,
    path: PathBuf,
    socket: UnixDatagram,
}

impl Listener {
    fn bind(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ha-systemd-{}-{name}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Listener { dir, path, socket }
    }

    fn recv(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn assert_nothing(&self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("expected no datagram, got {other:?}"),
        }
        self.socket.set_nonblocking(false).unwrap();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn systemd_notifications_reach_the_socket() {
    let env = Env::lock();
    let listener = Listener::bind("deliver");
    env.set("NOTIFY_SOCKET", listener.path.to_str().unwrap());

    ready("serving 2 VIPs on eth0");
    assert_eq!(listener.recv(), "READY=1\nSTATUS=serving 2 VIPs on eth0\n");
    watchdog();
    assert_eq!(listener.recv(), "WATCHDOG=1\n");
    stopping();
    assert_eq!(listener.recv(), "STOPPING=1\n");
    listener.assert_nothing();
}

#[test]
fn systemd_status_stays_on_one_line() {
    let env = Env::lock();
    let listener = Listener::bind("oneline");
    env.set("NOTIFY_SOCKET", listener.path.to_str().unwrap());

    ready("first\nREADY=1\r\nlast");
    assert_eq!(listener.recv(), "READY=1\nSTATUS=first READY=1  last\n");
    ready("a\nb");
    assert_eq!(listener.recv(), "READY=1\nSTATUS=a b\n");
}

#[test]
fn systemd_abstract_socket() {
    let env = Env::lock();
    let name = format!("ha-systemd-test-{}", std::process::id());
    let address = {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
    };
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    env.set("NOTIFY_SOCKET", &format!("@{name}"));

    watchdog();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"WATCHDOG=1\n");
}

#[test]
fn systemd_without_notify_socket_does_nothing() {
    let env = Env::lock();
    let listener = Listener::bind("absent");
    env.remove("NOTIFY_SOCKET");

    ready("ready");
    watchdog();
    stopping();
    listener.assert_nothing();
    assert_eq!(watchdog_period(), None);
}

#[test]
fn systemd_unreachable_socket_is_not_fatal() {
    let env = Env::lock();
    let listener = Listener::bind("gone");
    let path = listener.path.clone();
    drop(listener);
    env.set("NOTIFY_SOCKET", path.to_str().unwrap());
    ready("ready");
    watchdog();
    env.set("NOTIFY_SOCKET", "relative/path");
    stopping();
}

/// A receiver that never reads (PID 1 stalled) must not stall the
/// agent's loop: sends fail with EAGAIN instead of blocking.
#[test]
fn systemd_full_queue_does_not_block() {
    let env = Env::lock();
    let listener = Listener::bind("full");
    env.set("NOTIFY_SOCKET", listener.path.to_str().unwrap());

    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Far more than net.unix.max_dgram_qlen (512 at most by default).
        for _ in 0..5000 {
            watchdog();
        }
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("watchdog() blocked on a full notify socket");
    assert_eq!(listener.recv(), "WATCHDOG=1\n");
}

#[test]
fn systemd_watchdog_period_is_half_of_watchdog_usec() {
    let env = Env::lock();
    assert_eq!(watchdog_period(), None);

    env.set("WATCHDOG_USEC", "5000000");
    assert_eq!(watchdog_period(), Some(Duration::from_millis(2500)));

    // Set for this process: honoured.
    env.set("WATCHDOG_PID", &std::process::id().to_string());
    assert_eq!(watchdog_period(), Some(Duration::from_millis(2500)));

    // Set for another process (we are a child that inherited it).
    env.set("WATCHDOG_PID", &(std::process::id() + 1).to_string());
    assert_eq!(watchdog_period(), None);
    env.remove("WATCHDOG_PID");

    env.set("WATCHDOG_USEC", "0");
    assert_eq!(watchdog_period(), None);
    env.set("WATCHDOG_USEC", "soon");
    assert_eq!(watchdog_period(), None);
    env.set("WATCHDOG_USEC", "3");
    assert_eq!(watchdog_period(), Some(Duration::from_nanos(1500)));
}
