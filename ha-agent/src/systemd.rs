//! systemd integration for `Type=notify` (packaging/systemd/ha-agent.service):
//! readiness (`READY=1`), the watchdog (`WATCHDOG=1`), `STOPPING=1` and a
//! status line for `systemctl status`.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is not set (not started by
//! systemd, or started by an old-style unit), and never fails: a message
//! that cannot be delivered is logged, rate-limited, and the agent goes on.
//!
//! Why the datagram is sent here rather than by `sd_notify::notify`: the
//! messages come from the agent's main loop, which also sends heartbeats
//! every few tens of milliseconds, so a send must never block. Ours is
//! non-blocking (a full queue at PID 1 drops the message, and a watchdog
//! ping is simply sent again next period) and also understands abstract
//! socket names (`@name`), which systemd uses inside some containers. The
//! `sd-notify` crate (pure Rust) supplies the message format and the
//! `WATCHDOG_USEC`/`WATCHDOG_PID` parsing.
//!
//! `NOTIFY_SOCKET` is deliberately left in the environment, never unset:
//! the agent needs it for every later message (watchdog pings, `STOPPING=1`),
//! and removing an environment variable from a running multi-threaded
//! process is unsound (`std::env::remove_var` is `unsafe` for that reason).
//! Children (exec health checks, hooks, the fencing command) therefore
//! inherit it, which is harmless: the unit says `NotifyAccess=main`, so
//! systemd ignores any message that does not come from the agent's own PID,
//! and `WATCHDOG_PID` (the agent's PID) tells a child's sd_notify library
//! that the watchdog is not its business. A caller that wants children
//! without these variables removes [`NOTIFY_ENV`] from each child's
//! `Command` (`env_remove`), which is safe.

use std::{
    io,
    os::unix::net::{SocketAddr, UnixDatagram},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use sd_notify::NotifyState;

/// The variables systemd sets for the notify protocol; see the module
/// documentation for why the agent keeps them.
pub const NOTIFY_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Tells systemd the agent is ready (READY=1 with a STATUS= line); a no-op
/// without NOTIFY_SOCKET.
pub fn ready(status: &str) {
    let status = one_line(status);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd a reload began (RELOADING=1 with the monotonic time it
/// wants beside it); `ready` ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => tracing::warn!(error = %e, "no monotonic time for RELOADING=1"),
    }
}

/// Tells systemd the agent is stopping (STOPPING=1).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The watchdog period the agent must ping at (half of WATCHDOG_USEC), if
/// systemd asked for one. None when `WATCHDOG_USEC` is unset, zero or not a
/// number, or when `WATCHDOG_PID` names another process (a child that
/// inherited the variables).
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout / 2)
}

/// One watchdog ping (WATCHDOG=1).
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// A status line shown by `systemctl status` (STATUS=...).
pub fn status(text: &str) {
    let text = one_line(text);
    send(&[NotifyState::Status(&text)]);
}

/// Set while messages fail, so a broken socket logs one warning, not one per
/// watchdog period.
static FAILING: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState<'_>]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    match send_to(&path, message.as_bytes()) {
        Ok(()) => {
            if FAILING.swap(false, Ordering::Relaxed) {
                tracing::info!("systemd notifications delivered again");
            }
        }
        Err(e) => {
            let socket = path.to_string_lossy();
            let message = message.trim_end().replace('\n', " ");
            if FAILING.swap(true, Ordering::Relaxed) {
                tracing::debug!(%socket, %message, "systemd notification failed: {e}");
            } else {
                tracing::warn!(%socket, %message, "systemd notification failed: {e}");
            }
        }
    }
}

/// One non-blocking datagram to the notify socket: a path, or an abstract
/// name written `@name`.
fn send_to(path: &std::ffi::OsStr, message: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;

    let bytes = path.as_bytes();
    let address = match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        Some((b'/', _)) => SocketAddr::from_pathname(path)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor @abstract",
            ));
        }
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let sent = socket.send_to_addr(message, &address)?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification truncated",
        ));
    }
    Ok(())
}

/// The protocol is one `KEY=value` per line: a status with a newline would
/// end its line early and could inject another assignment (`READY=1`).
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
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
        status("reload failed: ha.toml:3:1: bad");
        assert_eq!(listener.recv(), "STATUS=reload failed: ha.toml:3:1: bad\n");
        stopping();
        assert_eq!(listener.recv(), "STOPPING=1\n");
        listener.assert_nothing();
    }

    #[test]
    fn systemd_status_stays_on_one_line() {
        let env = Env::lock();
        let listener = Listener::bind("oneline");
        env.set("NOTIFY_SOCKET", listener.path.to_str().unwrap());

        status("first\nREADY=1\r\nlast");
        assert_eq!(listener.recv(), "STATUS=first READY=1  last\n");
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
        status("status");
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
}
