//! What the kernel knows about our link, read off the main loop: a task
//! dumps the neighbour table and reads the link state every second (every
//! 100 ms for half a second after the addresses to watch changed, so a
//! reload's new backends are usable soon), solicits the addresses it did
//! not find, and reports each reading as an event. A netlink dump can be
//! slow and a MAC may never come: the main loop, which must send heartbeats
//! and renew leases on time, never waits for either.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use tokio::sync::{mpsc, watch};

use crate::{
    backoff::Backoff,
    model::Mac,
    netlink::{Netlink, solicit},
};

/// How often the neighbour table and the link state are read.
const REFRESH: Duration = Duration::from_secs(1);
/// How often while addresses that just became wanted are missing...
const HURRY: Duration = Duration::from_millis(100);
/// ...and for how long.
const HURRY_FOR: Duration = Duration::from_millis(500);
/// The longest pause after failed readings (doubling from `REFRESH`).
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// One reading of the kernel's view.
pub(super) struct Reading {
    /// Every usable neighbour entry on our interface (the loop picks the
    /// addresses it needs: a reading started before a reload is still
    /// right for the reloaded config).
    pub table: HashMap<IpAddr, Mac>,
    /// IFF_UP and IFF_RUNNING; false when it could not be read.
    pub link_up: bool,
}

/// The addresses that matter.
#[derive(Clone, Debug, Default)]
pub(super) struct Watched {
    /// Solicited while they are not in the table (backends).
    pub missing: Vec<IpAddr>,
    /// Solicited at every reading (the tie-breaker), so that the kernel
    /// probes the entry and it goes FAILED once nobody answers.
    pub always: Vec<IpAddr>,
}

/// The watching task: told which addresses matter, it sends readings.
pub(super) struct NeighbourWatch {
    wanted: watch::Sender<Watched>,
    pub(super) readings: mpsc::Receiver<Reading>,
    task: tokio::task::JoinHandle<()>,
}

impl NeighbourWatch {
    /// Starts watching `wanted` on `netlink`'s interface.
    pub(super) fn start(netlink: Netlink, wanted: Watched) -> NeighbourWatch {
        let (wanted, watched) = watch::channel(wanted);
        let (tx, readings) = mpsc::channel(4);
        let task = tokio::spawn(watch_neighbours(netlink, watched, tx));
        NeighbourWatch {
            wanted,
            readings,
            task,
        }
    }

    /// Watches `wanted` from now on: reads at once, then in a hurry while
    /// some are missing.
    pub(super) fn want(&self, wanted: Watched) {
        self.wanted.send_replace(wanted);
    }
}

impl Drop for NeighbourWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_neighbours(
    netlink: Netlink,
    mut wanted: watch::Receiver<Watched>,
    readings: mpsc::Sender<Reading>,
) {
    let mut hurry_until = None;
    let mut backoff = Backoff::new(REFRESH, MAX_BACKOFF);
    loop {
        let watched = wanted.borrow_and_update().clone();
        let pause = match netlink.neighbours().await {
            Ok(table) => {
                backoff.succeeded();
                let missing: Vec<IpAddr> = watched
                    .missing
                    .iter()
                    .copied()
                    .filter(|a| !table.contains_key(a))
                    .collect();
                for addr in missing.iter().chain(&watched.always) {
                    solicit(*addr).await;
                }
                let link_up = netlink.link_up().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %format!("{e:#}"), "link state not read: counted as down");
                    false
                });
                if readings.send(Reading { table, link_up }).await.is_err() {
                    return;
                }
                let hurry = hurry_until.is_some_and(|t| tokio::time::Instant::now() < t);
                if hurry && !missing.is_empty() {
                    HURRY
                } else {
                    REFRESH
                }
            }
            Err(e) => {
                let pause = backoff.failed();
                tracing::warn!(
                    error = %format!("{e:#}"),
                    failures = backoff.failures,
                    retry_in_ms = pause.as_millis() as u64,
                    "neighbour table not read: MACs stay as last known"
                );
                pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
                hurry_until = Some(tokio::time::Instant::now() + HURRY_FOR);
            }
        }
    }
}
