//! Backend health checks: the checkers (tcp, http, https, udp, exec) and the
//! rise/fall hysteresis that turns their results into up/down decisions.
//!
//! Why this exists: a floating IP is only as good as its backends. The
//! checks decide HEALTHY in the datapath's BACKENDS map; the agent's loop
//! receives a [`Transition`] exactly when a backend's state flips and
//! applies it (the two-phase switchover).
//!
//! How: [`RiseFall`] and the judging of an HTTP response are pure and
//! unit-tested on their own; a [`Checker`], built once per check, runs one
//! attempt against the backend's own address (never the VIP) within a
//! timeout; and [`CheckSet::spawn`] is the thin async shell, one tokio
//! task per backend.
//! Each checker lives in its own module.

mod exec;
mod http;
mod https;
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

use anyhow::{Context, Result};
use tokio::{sync::mpsc::UnboundedSender, task::JoinSet, time::MissedTickBehavior};

pub(crate) use self::rise_fall::RiseFall;
use crate::config::{CheckConfig, CheckKind, Config, TrackConfig, format_duration};
use crate::model::BackendKey;

/// One check to run, fully resolved: where to and what.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The backend's own address: checks go here, never to the VIP.
    pub address: IpAddr,
    /// The check's port on the backend.
    pub port: u16,
    /// The VIP and its port (for exec checks' environment).
    pub vip: IpAddr,
    pub vip_port: u16,
}

/// A check kind made ready to run: built once with the checks, so that
/// what can be wrong with the configuration (an https check's CA file)
/// fails then, and no attempt redoes the work.
#[derive(Clone, Debug)]
pub(crate) struct Checker {
    kind: CheckKind,
    /// The TLS client of an https check, built by [`Checker::new`]
    /// (`None` for every other kind).
    tls: Option<https::Tls>,
}

impl Checker {
    /// `configs`: the TLS client configurations shared by the checks of
    /// one build.
    pub(crate) fn new(kind: &CheckKind, configs: &mut https::ClientConfigs) -> Result<Checker> {
        let tls = match kind {
            CheckKind::Https {
                host,
                sni,
                ca_file,
                verify,
                ..
            } => Some(https::Tls::new(
                &https::TlsSettings {
                    sni: sni.as_deref(),
                    host: host.as_deref(),
                    ca_file: ca_file.as_deref(),
                    verify: *verify,
                },
                configs,
            )?),
            _ => None,
        };
        Ok(Checker {
            kind: kind.clone(),
            tls,
        })
    }

    /// Runs one check attempt with the timeout; `Ok(())` = healthy,
    /// `Err(reason)` = a short human reason such as `connect: connection
    /// refused`, `http status 503, expected 200`, `timeout after 100ms` or
    /// `exit status 2`.
    ///
    /// The whole attempt (connect, request, response) must fit in
    /// `timeout`. An exec check's process group is killed at the timeout.
    /// [`CheckKind::None`] always succeeds.
    pub(crate) async fn check(&self, target: &Target, timeout: Duration) -> Result<(), String> {
        let address = SocketAddr::new(target.address, target.port);
        let attempt = async {
            match &self.kind {
                CheckKind::None => Ok(()),
                CheckKind::Tcp => tcp::check(address).await,
                CheckKind::Http {
                    path,
                    host,
                    expect_status,
                    expect_body,
                } => {
                    let host = host
                        .clone()
                        .unwrap_or_else(|| http::default_host(address, 80));
                    http::check(address, path, &host, *expect_status, expect_body.as_deref()).await
                }
                CheckKind::Https {
                    path,
                    host,
                    expect_status,
                    expect_body,
                    ..
                } => {
                    let Some(tls) = &self.tls else {
                        return Err("https check built without its TLS client".to_owned());
                    };
                    let host = host
                        .clone()
                        .unwrap_or_else(|| http::default_host(address, 443));
                    let expect_body = expect_body.as_deref();
                    https::check(address, tls, path, &host, *expect_status, expect_body).await
                }
                CheckKind::Udp { send, expect } => {
                    udp::check(address, send, expect.as_deref()).await
                }
                CheckKind::Exec { command } => {
                    return exec::check(command, target, timeout).await;
                }
            }
        };
        // Exec checks enforce the timeout themselves (they must kill).
        if matches!(self.kind, CheckKind::Exec { .. }) {
            return attempt.await;
        }
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(timed_out(timeout)))
    }
}

/// A health change of one backend (or, with `K = usize`, of one of the
/// node's track checks), as the agent's loop receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transition<K = BackendKey> {
    pub key: K,
    /// The new state.
    pub up: bool,
    /// Why, e.g. `tcp check failed 3 times in a row (last: connect:
    /// connection refused)`.
    pub cause: String,
    /// When the deciding result came in.
    pub at: Instant,
}

/// The running checks of one configuration. Dropping it aborts every
/// check task, so a reload can replace the set.
pub(crate) struct Checks {
    tasks: JoinSet<()>,
}

impl Checks {
    /// The number of check tasks (backends with a check other than
    /// `none`).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// The checks of one configuration, built but not running: whatever can
/// be wrong with the configuration (an unreadable CA file) has failed in
/// building them, before a start-up or a reload changed anything.
pub(crate) struct CheckSet<K> {
    checks: Vec<BuiltCheck<K>>,
}

struct BuiltCheck<K> {
    key: K,
    config: CheckConfig,
    checker: Checker,
    target: Target,
}

/// The checks of every backend of every VIP whose check is not `none`.
///
/// Backends of `none` checks get no check and never a transition: they
/// always count as up, whatever `initially_down` says at the spawn.
pub(crate) fn backend_checks(config: &Config) -> Result<CheckSet<BackendKey>> {
    let mut configs = https::ClientConfigs::default();
    let mut checks = Vec::new();
    for (v, vip) in config.vips.iter().enumerate() {
        if vip.check.kind == CheckKind::None {
            continue;
        }
        let checker = Checker::new(&vip.check.kind, &mut configs)
            .with_context(|| format!("the {} check of VIP {}", vip.check.kind.name(), vip.name))?;
        for (b, backend) in vip.backends.iter().enumerate() {
            checks.push(BuiltCheck {
                key: BackendKey { vip: v, backend: b },
                config: vip.check.clone(),
                checker: checker.clone(),
                target: Target {
                    address: backend.address,
                    port: vip.check.port,
                    vip: vip.address,
                    vip_port: vip.port,
                },
            });
        }
    }
    Ok(CheckSet { checks })
}

/// The node's track checks (`[[cluster.track]]`), keyed by their index: a
/// node is eligible to own VIPs only while they pass. Spawn them all down:
/// a node proves its tracked services before it may take anything.
pub(crate) fn track_checks(tracks: &[TrackConfig]) -> Result<CheckSet<usize>> {
    let mut configs = https::ClientConfigs::default();
    let mut checks = Vec::new();
    for (index, track) in tracks.iter().enumerate() {
        let checker = Checker::new(&track.check.kind, &mut configs).with_context(|| {
            format!(
                "the {} check of track {} ({})",
                track.check.kind.name(),
                index + 1,
                track.address
            )
        })?;
        checks.push(BuiltCheck {
            key: index,
            config: track.check.clone(),
            checker,
            target: Target {
                address: track.address,
                port: track.check.port,
                vip: track.address,
                vip_port: track.check.port,
            },
        });
    }
    Ok(CheckSet { checks })
}

impl<K: Copy + Ord + fmt::Debug + Send + Sync + 'static> CheckSet<K> {
    /// Spawns one tokio task per check. Each runs its check at once and
    /// then every `interval` (a tokio interval with
    /// [`MissedTickBehavior::Delay`], so a slow check delays the next one
    /// instead of bunching them), feeds a [`RiseFall`] that starts down for
    /// the keys in `initially_down` and up for the others (a reload carries
    /// the state over), and sends a [`Transition`] on `tx` exactly when the
    /// state flips. A task ends when `tx`'s receiver is gone. Must be
    /// called within a tokio runtime.
    pub(crate) fn spawn(
        self,
        initially_down: &BTreeSet<K>,
        tx: UnboundedSender<Transition<K>>,
    ) -> Checks {
        let mut tasks = JoinSet::new();
        for check in self.checks {
            let initially_up = !initially_down.contains(&check.key);
            tasks.spawn(run_check(check, initially_up, tx.clone()));
        }
        Checks { tasks }
    }
}

/// The loop of one check.
async fn run_check<K: Copy + fmt::Debug + Send + 'static>(
    built: BuiltCheck<K>,
    initially_up: bool,
    tx: UnboundedSender<Transition<K>>,
) {
    let BuiltCheck {
        key,
        config: check,
        checker,
        target,
    } = built;
    let mut state = RiseFall::new(check.rise, check.fall, initially_up);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // The first tick completes at once.
        ticker.tick().await;
        let result = checker.check(&target, check.timeout).await;
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
