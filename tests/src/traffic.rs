//! Real TCP traffic through the lab, bounded in count and time.
//!
//! `NameServer` answers every connection with its name, so a client can tell
//! which backend served it; `connect_many` opens connections one after
//! another and tallies who answered. Every wait has a timeout: a broken
//! datapath makes a test fail, never hang.

use std::{
    collections::BTreeMap,
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// How long the server sleeps in poll(2) before it looks at its stop flag.
const POLL_MS: i32 = 20;
/// How many error texts a `Tally` keeps.
const KEPT_ERRORS: usize = 5;
/// The longest answer line read; a name is much shorter.
const MAX_LINE: u64 = 256;

/// A TCP server on a thread inside a namespace: accepts connections on its
/// address and answers each with its name and '\n', then closes it. Dropping
/// it stops the thread and closes the listener.
pub struct NameServer {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl NameServer {
    /// Binds `addr` in `ns` (it must be an address of that namespace, a VIP
    /// on `lo` included) and starts answering.
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> Result<NameServer> {
        let listener = ns
            .run(move || TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)))
            .with_context(|| format!("cannot listen on {addr} in {}", ns.name()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let answer = format!("{name}\n");
        let thread = ns.spawn({
            let (stop, accepted) = (stop.clone(), accepted.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    wait_readable(&listener);
                    if let Ok((mut conn, _)) = listener.accept() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        // A client that went away is its own failure to count.
                        let _ = conn
                            .set_write_timeout(Some(Duration::from_secs(1)))
                            .and_then(|()| conn.write_all(answer.as_bytes()));
                    }
                }
            }
        });
        Ok(NameServer {
            stop,
            accepted,
            thread: Some(thread),
        })
    }

    /// How many connections the server has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until `listener` has a connection to accept, at most `POLL_MS`.
fn wait_readable(listener: &TcpListener) {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; the result only shortens the wait.
    unsafe { libc::poll(&mut fd, 1, POLL_MS) };
}

/// Who answered a series of connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Answers per server name.
    pub by_name: BTreeMap<String, u64>,
    /// Connections that failed or got no answer line.
    pub failures: u64,
    /// The error texts of the first few failures.
    pub first_errors: Vec<String>,
}

/// Opens `count` TCP connections one after another from inside `ns` to
/// `target`, each from a fresh ephemeral port, with `timeout` for the
/// connect and again for the answer, and tallies the answers. Takes at most
/// about `2 * count * timeout`.
pub fn connect_many(ns: &Netns, target: SocketAddr, count: u32, timeout: Duration) -> Tally {
    ns.run(move || {
        let mut tally = Tally::default();
        for i in 0..count {
            match ask_name(target, timeout) {
                Ok(name) => *tally.by_name.entry(name).or_default() += 1,
                Err(e) => {
                    tally.failures += 1;
                    if tally.first_errors.len() < KEPT_ERRORS {
                        tally
                            .first_errors
                            .push(format!("connection {i} to {target}: {e}"));
                    }
                }
            }
        }
        tally
    })
}

/// One connection: connect, read the answer line, close.
fn ask_name(target: SocketAddr, timeout: Duration) -> io::Result<String> {
    let conn = TcpStream::connect_timeout(&target, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(conn.take(MAX_LINE)).read_line(&mut line)?;
    match line.strip_suffix('\n') {
        Some(name) => Ok(name.to_owned()),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("no answer line (got {line:?})"),
        )),
    }
}
