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
//! that the watchdog is not its business. Still, `process` leaves
//! [`NOTIFY_ENV`] out of every child's environment (per `Command`, which is
//! safe), so a child cannot even try to speak for the agent.

use std::{
    io,
    os::unix::net::{SocketAddr, UnixDatagram},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use sd_notify::NotifyState;

/// The variables systemd sets for the notify protocol; see the module
/// documentation for why the agent keeps them.
pub(crate) const NOTIFY_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Tells systemd the agent is ready (READY=1 with a STATUS= line); a no-op
/// without NOTIFY_SOCKET.
pub(crate) fn ready(status: &str) {
    let status = one_line(status);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd a reload began (RELOADING=1 with the monotonic time it
/// wants beside it); `ready` ends it.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => tracing::warn!(error = %e, "no monotonic time for RELOADING=1"),
    }
}

/// Tells systemd the agent is stopping (STOPPING=1).
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The watchdog period the agent must ping at (half of WATCHDOG_USEC), if
/// systemd asked for one. None when `WATCHDOG_USEC` is unset, zero or not a
/// number, or when `WATCHDOG_PID` names another process (a child that
/// inherited the variables).
pub(crate) fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout / 2)
}

/// One watchdog ping (WATCHDOG=1).
pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
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
mod tests;
