//! Backend health checks: the checkers (tcp, http, udp, exec) and the
//! rise/fall hysteresis that turns their results into up/down decisions.
//!
//! Why this exists: a floating IP is only as good as its backends. The
//! checks decide HEALTHY in the datapath's BACKENDS map; the agent's loop
//! receives a [`Transition`] exactly when a backend's state flips and
//! applies it (the two-phase switchover).
//!
//! How: [`RiseFall`] and the judging of an HTTP response are pure and
//! unit-tested on their own; [`check_once`] runs one attempt against the
//! backend's own address (never the VIP) within a timeout; and
//! [`spawn_checks`] is the thin async shell, one tokio task per backend.
//! Each checker lives in its own module.

mod exec;
mod http;
mod rise_fall;
mod tcp;
#[cfg(test)]
mod tests;
mod udp;

use std::{
    collections::BTreeSet,
    fmt, io,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::{sync::mpsc::UnboundedSender, task::JoinSet, time::MissedTickBehavior};

pub use self::rise_fall::RiseFall;
use crate::config::{CheckConfig, CheckKind, Config, TrackConfig, format_duration};

/// One check to run, fully resolved: where to and what.
#[derive(Clone, Debug)]
pub struct Target {
    /// The backend's own address: checks go here, never to the VIP.
    pub address: IpAddr,
    /// The check's port on the backend.
    pub port: u16,
    /// The VIP and its port (for exec checks' environment).
    pub vip: IpAddr,
    pub vip_port: u16,
}

/// Runs one check attempt with the timeout; `Ok(())` = healthy,
/// `Err(reason)` = a short human reason such as `connect: connection
/// refused`, `http status 503, expected 200`, `timeout after 100ms` or
/// `exit status 2`.
///
/// The whole attempt (connect, request, response) must fit in `timeout`.
/// An exec check's process group is killed at the timeout.
/// [`CheckKind::None`] always succeeds.
pub async fn check_once(
    kind: &CheckKind,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    let address = SocketAddr::new(target.address, target.port);
    let attempt = async {
        match kind {
            CheckKind::None => Ok(()),
            CheckKind::Tcp => tcp::check(address).await,
            CheckKind::Http {
                path,
                host,
                expect_status,
                expect_body,
            } => {
                let host = host.clone().unwrap_or_else(|| http::default_host(address));
                http::check(address, path, &host, *expect_status, expect_body.as_deref()).await
            }
            CheckKind::Udp { send, expect } => udp::check(address, send, expect.as_deref()).await,
            CheckKind::Exec { command } => return exec::check(command, target, timeout).await,
        }
    };
    // Exec checks enforce the timeout themselves (they must kill).
    if matches!(kind, CheckKind::Exec { .. }) {
        return attempt.await;
    }
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(timed_out(timeout)))
}

/// A health change of one backend (or, with `K = usize`, of one of the
/// node's track checks), as the agent's loop receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition<K = BackendKey> {
    pub key: K,
    /// The new state.
    pub up: bool,
    /// Why, e.g. `tcp check failed 3 times in a row (last: connect:
    /// connection refused)`.
    pub cause: String,
    /// When the deciding result came in.
    pub at: Instant,
}

/// Identifies a backend of a VIP: index of the VIP in `config.vips` and
/// index of the backend in `vip.backends`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey {
    pub vip: usize,
    pub backend: usize,
}

/// The running checks of one configuration. Dropping it aborts every
/// check task, so a reload can replace the set.
pub struct Checks {
    tasks: JoinSet<()>,
}

impl Checks {
    /// The number of check tasks (backends with a check other than
    /// `none`).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Spawns one tokio task per backend of every VIP whose check is not
/// `none`. Each runs [`check_once`] at once and then every `interval` (a
/// tokio interval with [`MissedTickBehavior::Delay`], so a slow check
/// delays the next one instead of bunching them), feeds a [`RiseFall`]
/// that starts down for the backends in `initially_down` and up for the
/// others (a reload carries the state over), and sends a [`Transition`] on `tx`
/// exactly when the state flips. A task ends when `tx`'s receiver is
/// gone. Must be called within a tokio runtime.
///
/// Backends of `none` checks get no task and never a transition: they
/// always count as up, whatever `initially_down` says.
pub fn spawn_checks(
    config: &Config,
    initially_down: &BTreeSet<BackendKey>,
    tx: UnboundedSender<Transition>,
) -> Checks {
    let mut tasks = JoinSet::new();
    for (v, vip) in config.vips.iter().enumerate() {
        if vip.check.kind == CheckKind::None {
            continue;
        }
        for (b, backend) in vip.backends.iter().enumerate() {
            let key = BackendKey { vip: v, backend: b };
            let target = Target {
                address: backend.address,
                port: vip.check.port,
                vip: vip.address,
                vip_port: vip.port,
            };
            tasks.spawn(run_check(
                key,
                vip.check.clone(),
                target,
                !initially_down.contains(&key),
                tx.clone(),
            ));
        }
    }
    Checks { tasks }
}

/// The node's track checks (`[[cluster.track]]`): a node is eligible to
/// own VIPs only while they pass. They start down: a node proves its
/// tracked services before it may take anything.
pub fn spawn_track_checks(
    tracks: &[TrackConfig],
    tx: UnboundedSender<Transition<usize>>,
) -> Checks {
    let mut tasks = JoinSet::new();
    for (index, track) in tracks.iter().enumerate() {
        let target = Target {
            address: track.address,
            port: track.check.port,
            vip: track.address,
            vip_port: track.check.port,
        };
        tasks.spawn(run_check(
            index,
            track.check.clone(),
            target,
            false,
            tx.clone(),
        ));
    }
    Checks { tasks }
}

/// The loop of one check.
async fn run_check<K: Copy + fmt::Debug + Send + 'static>(
    key: K,
    check: CheckConfig,
    target: Target,
    initially_up: bool,
    tx: UnboundedSender<Transition<K>>,
) {
    let mut state = RiseFall::new(check.rise, check.fall, initially_up);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // The first tick completes at once.
        ticker.tick().await;
        let result = check_once(&check.kind, &target, check.timeout).await;
        if let Err(reason) = &result {
            tracing::debug!(
                ?key,
                address = %target.address,
                "{} check failed: {reason}",
                check.kind.name()
            );
        }
        let Some(up) = state.record(result.is_ok()) else {
            continue;
        };
        let transition = Transition {
            key,
            up,
            cause: cause(&check, result.err().as_deref()),
            at: Instant::now(),
        };
        if tx.send(transition).is_err() {
            return;
        }
    }
}

/// The cause of a flip: up after `rise` successes, or down after `fall`
/// failures, the last of which failed for `failure`.
fn cause(check: &CheckConfig, failure: Option<&str>) -> String {
    let times = |n: u32| {
        if n == 1 {
            "once".to_owned()
        } else {
            format!("{n} times in a row")
        }
    };
    match failure {
        None => format!("{} check passed {}", check.kind.name(), times(check.rise)),
        Some(reason) => format!(
            "{} check failed {} (last: {reason})",
            check.kind.name(),
            times(check.fall)
        ),
    }
}

// ---------------------------------------------------------------------------
// What the checkers share.

pub(super) fn timed_out(timeout: Duration) -> String {
    format!("timeout after {}", format_duration(timeout))
}

/// An I/O error as a short lower-case reason: `connection refused`.
pub(super) fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text
        .find(" (os error")
        .map_or(text.as_str(), |i| &text[..i]);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()),
    }
}

/// Where `needle` first occurs in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
