//! Real TCP traffic through the lab, bounded in count and time.
//!
//! `NameServer` answers every connection with its name, so a client can tell
//! which backend served it; `connect_many` opens connections one after
//! another and tallies who answered. Every wait has a timeout: a broken
//! datapath makes a test fail, never hang.
//!
//! For failure scenarios: `ServerProcess` is a backend server as a real
//! process (`ha-lab-server`), to be killed with SIGKILL; `start_rate_client`
//! opens new connections on a fixed schedule and records when each one
//! started and how it ended; `LongLived` keeps connections exchanging data
//! and records whether and when each one broke. The two clients run on a
//! single thread each (a tokio current-thread runtime inside the namespace),
//! so an attempt stuck waiting for its timeout never delays the others.

use std::{
    collections::BTreeMap,
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Child, ChildStderr, ExitStatus, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt},
    sync::watch,
    task::JoinSet,
};

use crate::{agent, netns::Netns};

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

/// How long `ServerProcess::start` waits for the server's "ready".
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a server process's stderr is kept for error messages.
const KEPT_STDERR: usize = 16 * 1024;

/// A backend server as a real process in a namespace (`ha-lab-server`), so
/// tests can kill it with SIGKILL. It listens on `[::]:port` dual-stack, for
/// TCP and UDP: every address of its host, a VIP on `lo` included. TCP: the
/// name line, then an echo of everything until EOF. UDP: each datagram is
/// answered with `<name>:<payload>`, from the address it was sent to.
/// Dropping it kills the process.
pub struct ServerProcess {
    child: Option<Child>,
    name: String,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `ha-lab-server --name <name> --port <port> --udp` in `ns` and
    /// waits (at most 5 s) until it says it listens; an error with its
    /// stderr if it does not.
    pub fn start(ns: &Netns, name: &str, port: u16) -> Result<ServerProcess> {
        let program = agent::binary("ha-lab-server")?;
        let mut child = ns
            .command(&program)
            .args(["--name", name, "--port", &port.to_string(), "--udp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} in {}", program.display(), ns.name()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_thread = collect_stderr(child.stderr.take().expect("stderr is piped"), &stderr);
        // The first line, read on a thread so the wait can time out.
        let (line_tx, line_rx) = mpsc::sync_channel(1);
        thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout.take(MAX_LINE)).read_line(&mut line);
            let _ = line_tx.send(read.map(|_| line));
        });
        let mut server = ServerProcess {
            child: Some(child),
            name: name.to_owned(),
            port,
            stderr,
        };
        let problem = match line_rx.recv_timeout(SERVER_READY_TIMEOUT) {
            Ok(Ok(line)) if line.trim_end() == "ready" => return Ok(server),
            Ok(Ok(line)) if line.is_empty() => "exited before it was ready".to_owned(),
            Ok(Ok(line)) => format!("said {line:?} instead of \"ready\""),
            Ok(Err(e)) => format!("cannot read its stdout: {e}"),
            Err(_) => format!("not ready after {SERVER_READY_TIMEOUT:?}"),
        };
        let status = server.kill_and_wait();
        // The process is gone, so its stderr has reached EOF.
        let _ = stderr_thread.join();
        bail!(
            "ha-lab-server {name} on port {port} in {}: {problem} ({}); stderr:\n{}",
            ns.name(),
            status.map_or_else(|| "no exit status".to_owned(), |s| s.to_string()),
            server.stderr()
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the server wrote to stderr so far (the first 16 KiB).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Kills the server with SIGKILL and reaps it; does nothing the second
    /// time. Its sockets close as in a crash: no more answers, no goodbye.
    pub fn kill(&mut self) {
        self.kill_and_wait();
    }

    fn kill_and_wait(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // Child::kill sends SIGKILL; it fails only if the child was reaped.
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `pipe` into `kept` (up to `KEPT_STDERR` bytes) until EOF.
fn collect_stderr(mut pipe: ChildStderr, kept: &Arc<Mutex<String>>) -> JoinHandle<()> {
    let kept = kept.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() < KEPT_STDERR {
                kept.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    })
}

/// The most attempts one `start_rate_client` run makes.
const MAX_ATTEMPTS: u64 = 100_000;

/// One new connection of a `RateRun`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it started, since the run's start.
    pub at: Duration,
    /// Who answered, if it succeeded.
    pub backend: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What `start_rate_client` saw: every attempt, in the order started.
#[derive(Debug, Clone)]
pub struct RateRun {
    /// The run's start: attempt `i` was due at `started + i / rate`.
    pub started: Instant,
    pub attempts: Vec<Attempt>,
}

impl RateRun {
    pub fn failures(&self) -> usize {
        self.attempts.iter().filter(|a| a.error.is_some()).count()
    }

    /// Failed attempts that started at or after `t`.
    pub fn failures_after(&self, t: Duration) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.at >= t && a.error.is_some())
            .count()
    }

    /// Successful attempts answered by `backend` that started at or after `t`.
    pub fn answered_by_after(&self, backend: &str, t: Duration) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.at >= t && a.backend.as_deref() == Some(backend))
            .count()
    }

    /// Start time of the last failed attempt, if any.
    pub fn last_failure(&self) -> Option<Duration> {
        self.attempts
            .iter()
            .filter(|a| a.error.is_some())
            .map(|a| a.at)
            .max()
    }

    /// The outage: the longest time between two successful attempts (by
    /// start time), and when it ended. None if fewer than two succeeded.
    pub fn longest_gap(&self) -> Option<(Duration, Duration)> {
        let successes: Vec<Duration> = self
            .attempts
            .iter()
            .filter(|a| a.error.is_none())
            .map(|a| a.at)
            .collect();
        successes.windows(2).map(|w| (w[1] - w[0], w[1])).max()
    }

    /// Successful attempts per backend name.
    pub fn by_backend(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for name in self.attempts.iter().filter_map(|a| a.backend.as_ref()) {
            *counts.entry(name.clone()).or_default() += 1;
        }
        counts
    }

    /// Failed attempts per error text.
    pub fn errors(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for error in self.attempts.iter().filter_map(|a| a.error.as_ref()) {
            *counts.entry(error.clone()).or_default() += 1;
        }
        counts
    }
}

/// Opens new TCP connections to `target` from inside `ns` at `rate` per
/// second for `duration`, each with `timeout` for connecting and reading
/// the backend's name line together, and records every attempt with its
/// start time relative to the run's start. Attempt `i` starts at
/// `start + i / rate` whatever the others do: all run concurrently on one
/// thread (at most about `rate * timeout` sockets open at once). At most
/// 100 000 attempts. Runs in the background; `join()` returns the `RateRun`
/// after about `duration + timeout`.
pub fn start_rate_client(
    ns: &Netns,
    target: SocketAddr,
    rate: u32,
    duration: Duration,
    timeout: Duration,
) -> JoinHandle<RateRun> {
    let count = (u128::from(rate) * duration.as_nanos() / 1_000_000_000)
        .min(u128::from(MAX_ATTEMPTS)) as u64;
    ns.spawn(move || {
        runtime().block_on(async move {
            let started = Instant::now();
            let start = tokio::time::Instant::from_std(started);
            let mut attempts = JoinSet::new();
            for i in 0..count {
                let due = Duration::from_nanos(i * 1_000_000_000 / u64::from(rate));
                tokio::time::sleep_until(start + due).await;
                let at = started.elapsed();
                attempts.spawn(async move {
                    let (backend, error) = match ask_name_async(target, timeout).await {
                        Ok(name) => (Some(name), None),
                        Err(e) => (None, Some(e)),
                    };
                    (i, Attempt { at, backend, error })
                });
            }
            let mut done = Vec::with_capacity(count as usize);
            while let Some(result) = attempts.join_next().await {
                done.push(result.expect("a connection attempt panicked"));
            }
            done.sort_by_key(|(i, _)| *i);
            RateRun {
                started,
                attempts: done.into_iter().map(|(_, a)| a).collect(),
            }
        })
    })
}

/// A tokio runtime on the calling thread, whose sockets are made in the
/// thread's network namespace.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}

/// One new connection: connect and read the name line within `timeout`,
/// then close. The error says which step failed.
async fn ask_name_async(target: SocketAddr, timeout: Duration) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let conn = match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(target)).await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err(format!("connect: no answer within {timeout:?}")),
    };
    let mut reader = tokio::io::BufReader::new(conn);
    match tokio::time::timeout_at(deadline, read_name_line(&mut reader)).await {
        Ok(Ok(name)) => Ok(name),
        Ok(Err(e)) => Err(format!("name line: {e}")),
        Err(_) => Err(format!("name line: not within {timeout:?}")),
    }
}

/// Reads the backend's name line (at most `MAX_LINE` bytes).
async fn read_name_line(reader: &mut (impl AsyncBufRead + Unpin)) -> io::Result<String> {
    let mut line = String::new();
    reader.take(MAX_LINE).read_line(&mut line).await?;
    match line.strip_suffix('\n') {
        Some(name) => Ok(name.to_owned()),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("no answer line (got {line:?})"),
        )),
    }
}

/// How long a long-lived connection may take to be established (connect
/// and name line).
const LONG_LIVED_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a long-lived connection waits for each echo, and for the
/// server's EOF when it closes.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// The most long-lived connections one `LongLived` opens.
const MAX_LONG_LIVED: usize = 1000;

/// `count` long-lived TCP connections to `target` from a namespace, all on
/// one thread. Each reads the backend's name line, then every `period`
/// sends a small numbered message and reads its echo back (within 1 s),
/// until `stop()`. A connection breaks on any I/O error, an EOF, a timeout
/// or a wrong echo; a broken one stays broken (no reconnect) and records
/// when and why. Dropping it stops it like `stop()`.
pub struct LongLived {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<LongLivedReport>>,
}

/// What `LongLived::stop` returns.
#[derive(Debug, Clone)]
pub struct LongLivedReport {
    /// When the connections were all established and began exchanging:
    /// the origin of the `broke` times.
    pub started: Instant,
    /// One per connection, in the order opened.
    pub per_connection: Vec<ConnectionReport>,
}

/// One long-lived connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionReport {
    /// Who answered it (its name line).
    pub backend: String,
    /// Messages sent and echoed correctly.
    pub exchanges: u64,
    /// When (since `LongLivedReport::started`) and why it broke, if it did.
    pub broke: Option<(Duration, String)>,
}

impl LongLived {
    /// Opens `count` connections (at most 1000) to `target` from `ns`, each
    /// within 2 s, and starts the exchanges; an error if any connection
    /// cannot be established (the others are closed).
    pub fn start(
        ns: &Netns,
        target: SocketAddr,
        count: usize,
        period: Duration,
    ) -> Result<LongLived> {
        if count > MAX_LONG_LIVED {
            bail!("at most {MAX_LONG_LIVED} long-lived connections, not {count}");
        }
        if period.is_zero() {
            bail!("the period between exchanges must not be zero");
        }
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (stop, stop_rx) = watch::channel(false);
        let thread = ns.spawn(move || {
            runtime().block_on(long_lived(target, count, period, stop_rx, ready_tx))
        });
        let mut long_lived = LongLived {
            stop,
            thread: Some(thread),
        };
        let ready = ready_rx.recv_timeout(LONG_LIVED_CONNECT_TIMEOUT + Duration::from_secs(3));
        match ready {
            Ok(Ok(())) => Ok(long_lived),
            Ok(Err(e)) => {
                long_lived.finish();
                Err(anyhow!(e))
            }
            Err(e) => {
                // Gone (a panic) or stuck: stop it; a panic shows in join.
                let joined = long_lived.finish();
                bail!(
                    "long-lived connections to {target} not established ({e}){}",
                    if joined.is_none() {
                        ", the client thread panicked"
                    } else {
                        ""
                    }
                )
            }
        }
    }

    /// Stops all connections, closes each one cleanly (shutdown for
    /// writing, then read to the server's EOF, within 1 s), and reports.
    /// A connection whose close fails is reported broken at that moment.
    pub fn stop(mut self) -> LongLivedReport {
        self.finish()
            .expect("the long-lived connections' thread panicked")
    }

    /// Signals stop and joins the thread; `None` if it panicked (or was
    /// joined already).
    fn finish(&mut self) -> Option<LongLivedReport> {
        self.stop.send_replace(true);
        self.thread.take()?.join().ok()
    }
}

impl Drop for LongLived {
    fn drop(&mut self) {
        self.finish();
    }
}

impl LongLivedReport {
    /// Connections to backends other than `dead` that broke.
    pub fn broken_on_other_backends(&self, dead: &str) -> Vec<&ConnectionReport> {
        self.per_connection
            .iter()
            .filter(|c| c.backend != dead && c.broke.is_some())
            .collect()
    }

    /// Connections that broke.
    pub fn broken(&self) -> Vec<&ConnectionReport> {
        self.per_connection
            .iter()
            .filter(|c| c.broke.is_some())
            .collect()
    }

    /// Connections per backend name.
    pub fn by_backend(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for c in &self.per_connection {
            *counts.entry(c.backend.clone()).or_default() += 1;
        }
        counts
    }
}

type Connection = tokio::io::BufReader<tokio::net::TcpStream>;

/// The body of `LongLived`: opens the connections, tells `ready`, runs
/// them until `stop`.
async fn long_lived(
    target: SocketAddr,
    count: usize,
    period: Duration,
    stop: watch::Receiver<bool>,
    ready: mpsc::SyncSender<Result<(), String>>,
) -> LongLivedReport {
    let mut opening = JoinSet::new();
    for i in 0..count {
        opening.spawn(async move {
            let opened = tokio::time::timeout(LONG_LIVED_CONNECT_TIMEOUT, open(target)).await;
            (i, opened)
        });
    }
    let mut opened = Vec::with_capacity(count);
    let mut failed = None;
    while let Some(result) = opening.join_next().await {
        match result.expect("opening a connection panicked") {
            (i, Ok(Ok(conn))) => opened.push((i, conn)),
            (i, Ok(Err(e))) => failed = failed.or(Some(format!("connection {i} to {target}: {e}"))),
            (i, Err(_)) => failed = failed.or(Some(format!(
                "connection {i} to {target}: not established within {LONG_LIVED_CONNECT_TIMEOUT:?}"
            ))),
        }
    }
    let started = Instant::now();
    if let Some(e) = failed {
        let _ = ready.send(Err(e));
        return LongLivedReport {
            started,
            per_connection: Vec::new(),
        };
    }
    opened.sort_by_key(|(i, _)| *i);
    let mut running = JoinSet::new();
    for (i, (conn, backend)) in opened {
        running.spawn(keep_exchanging(
            i,
            conn,
            backend,
            period,
            stop.clone(),
            started,
        ));
    }
    let _ = ready.send(Ok(()));
    let mut reports = Vec::with_capacity(count);
    while let Some(result) = running.join_next().await {
        reports.push(result.expect("a long-lived connection panicked"));
    }
    reports.sort_by_key(|(i, _)| *i);
    LongLivedReport {
        started,
        per_connection: reports.into_iter().map(|(_, r)| r).collect(),
    }
}

/// Connects and reads the name line.
async fn open(target: SocketAddr) -> io::Result<(Connection, String)> {
    let conn = tokio::net::TcpStream::connect(target).await?;
    conn.set_nodelay(true)?;
    let mut conn = tokio::io::BufReader::new(conn);
    let name = read_name_line(&mut conn).await?;
    Ok((conn, name))
}

/// One long-lived connection: exchanges every `period` until `stop` or
/// until it breaks, then closes.
async fn keep_exchanging(
    index: usize,
    mut conn: Connection,
    backend: String,
    period: Duration,
    mut stop: watch::Receiver<bool>,
    started: Instant,
) -> (usize, ConnectionReport) {
    let mut report = ConnectionReport {
        backend,
        exchanges: 0,
        broke: None,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            // A change, or the sender gone: stop either way.
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let message = format!("{index}:{}\n", report.exchanges);
        match tokio::time::timeout(ECHO_TIMEOUT, exchange(&mut conn, &message)).await {
            Ok(Ok(())) => report.exchanges += 1,
            Ok(Err(e)) => {
                report.broke = Some((started.elapsed(), e));
                return (index, report);
            }
            Err(_) => {
                report.broke = Some((
                    started.elapsed(),
                    format!(
                        "no echo of message {} within {ECHO_TIMEOUT:?}",
                        report.exchanges
                    ),
                ));
                return (index, report);
            }
        }
    }
    match tokio::time::timeout(ECHO_TIMEOUT, close(&mut conn)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.broke = Some((started.elapsed(), format!("at close: {e}"))),
        Err(_) => {
            report.broke = Some((
                started.elapsed(),
                format!("at close: no EOF from the server within {ECHO_TIMEOUT:?}"),
            ))
        }
    }
    (index, report)
}

/// Sends `message` and reads it back.
async fn exchange(conn: &mut Connection, message: &str) -> Result<(), String> {
    conn.write_all(message.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut echo = vec![0u8; message.len()];
    let mut got = 0;
    while got < echo.len() {
        match conn.read(&mut echo[got..]).await {
            Ok(0) => {
                return Err(format!(
                    "EOF from the server (after {got} of {} echoed bytes)",
                    echo.len()
                ));
            }
            Ok(n) => got += n,
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    if echo != message.as_bytes() {
        return Err(format!(
            "wrong echo: sent {message:?}, got {:?}",
            String::from_utf8_lossy(&echo)
        ));
    }
    Ok(())
}

/// Shuts the connection down for writing and reads to the server's EOF;
/// anything the server still sends is an error.
async fn close(conn: &mut Connection) -> Result<(), String> {
    conn.shutdown()
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut rest = [0u8; 256];
    match conn.read(&mut rest).await {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!(
            "unexpected data before EOF: {:?}",
            String::from_utf8_lossy(&rest[..n])
        )),
        Err(e) => Err(format!("receive: {e}")),
    }
}
