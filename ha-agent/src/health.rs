//! Backend health checks: the checkers (tcp, http, udp, exec) and the
//! rise/fall hysteresis that turns their results into up/down decisions.
//!
//! Why this exists: a floating IP is only as good as its backends. The
//! checks decide HEALTHY in the datapath's BACKENDS map; the agent's loop
//! receives a [`Transition`] exactly when a backend's state flips and
//! applies it (DESIGN §2, two-phase switchover).
//!
//! How: [`RiseFall`] and the judging of an HTTP response are pure and
//! unit-tested on their own; [`check_once`] runs one attempt against the
//! backend's own address (never the VIP) within a timeout; and
//! [`spawn_checks`] is the thin async shell, one tokio task per backend.

use std::{
    collections::BTreeSet,
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    process::Command,
    sync::mpsc::UnboundedSender,
    task::JoinSet,
    time::MissedTickBehavior,
};

use crate::config::{
    CheckConfig, CheckKind, Config, MAX_HTTP_RESPONSE, TrackConfig, format_duration,
};

/// Rise/fall hysteresis, pure (as in HAProxy and keepalived).
///
/// A down backend comes up after `rise` consecutive successes; an up
/// backend goes down after `fall` consecutive failures. A result that
/// agrees with the current state resets the count towards a flip, so a
/// success resets the failure count and a failure the success count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    up: bool,
    /// Consecutive results that disagree with `up`.
    streak: u32,
}

impl RiseFall {
    /// `initially_up` is the state before any result:
    /// - `true`: the backend counts as up until `fall` consecutive
    ///   failures. A restarted or reloaded agent then keeps serving
    ///   through healthy backends, at the price of sending new flows to a
    ///   dead one for up to `fall` x `interval` after start.
    /// - `false`: the backend takes no traffic until `rise` consecutive
    ///   successes (conservative; costs `rise` x `interval` at start).
    ///
    /// `rise` and `fall` of 0 count as 1 (the config allows 1..=100).
    pub fn new(rise: u32, fall: u32, initially_up: bool) -> RiseFall {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            up: initially_up,
            streak: 0,
        }
    }

    /// Feeds one check result; returns `Some(new_state)` exactly when the
    /// state flips (`true` = now up).
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        self.up = success;
        self.streak = 0;
        Some(self.up)
    }

    pub fn is_up(&self) -> bool {
        self.up
    }
}

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
            CheckKind::Tcp => tcp(address).await,
            CheckKind::Http {
                path,
                host,
                expect_status,
                expect_body,
            } => {
                let host = host.clone().unwrap_or_else(|| default_host(address));
                http(address, path, &host, *expect_status, expect_body.as_deref()).await
            }
            // The TLS checker is not part of this build yet.
            CheckKind::Https { .. } => Err("https checks are not supported yet".to_owned()),
            CheckKind::Udp { send, expect } => udp(address, send, expect.as_deref()).await,
            CheckKind::Exec { command } => return exec(command, target, timeout).await,
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
// The checkers.

fn timed_out(timeout: Duration) -> String {
    format!("timeout after {}", format_duration(timeout))
}

/// An I/O error as a short lower-case reason: `connection refused`.
fn describe(e: &io::Error) -> String {
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

async fn connect(address: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {}", describe(&e)))
}

async fn tcp(address: SocketAddr) -> Result<(), String> {
    drop(connect(address).await?);
    Ok(())
}

/// The Host header when none is configured: the backend's address (IPv6
/// in brackets) with the port unless it is 80 (RFC 9110 §7.2).
fn default_host(address: SocketAddr) -> String {
    let host = match address.ip() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    match address.port() {
        80 => host,
        port => format!("{host}:{port}"),
    }
}

/// The request of an http check. HTTP/1.0, so the answer is never
/// chunked, and `Connection: close`, so the body ends at EOF.
fn http_request(path: &str, host: &str) -> String {
    format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ha-agent\r\nAccept: */*\r\n\r\n"
    )
}

async fn http(
    address: SocketAddr,
    path: &str,
    host: &str,
    expect_status: u16,
    expect_body: Option<&str>,
) -> Result<(), String> {
    let mut stream = connect(address).await?;
    stream
        .write_all(http_request(path, host).as_bytes())
        .await
        .map_err(|e| format!("send: {}", describe(&e)))?;
    let mut response = Vec::with_capacity(4096);
    loop {
        let room = (MAX_HTTP_RESPONSE - response.len()) as u64;
        let n = (&mut stream)
            .take(room)
            .read_buf(&mut response)
            .await
            .map_err(|e| format!("recv: {}", describe(&e)))?;
        let eof = n == 0 || response.len() >= MAX_HTTP_RESPONSE;
        if let Some(verdict) = judge_http(&response, eof, expect_status, expect_body) {
            return verdict;
        }
    }
}

/// Judges an HTTP response read so far (`eof`: nothing more will come),
/// pure. `None`: more is needed.
fn judge_http(
    response: &[u8],
    eof: bool,
    expect_status: u16,
    expect_body: Option<&str>,
) -> Option<Result<(), String>> {
    let Some(line_end) = response.iter().position(|&c| c == b'\n') else {
        return eof.then(|| {
            Err(if response.is_empty() {
                "connection closed without a response".to_owned()
            } else {
                "no status line".to_owned()
            })
        });
    };
    let line = String::from_utf8_lossy(&response[..line_end]);
    let line = line.trim_end_matches('\r');
    let status = match parse_status_line(line) {
        Some(status) => status,
        None => {
            let shown: String = line.chars().take(40).collect();
            return Some(Err(format!(
                "malformed status line `{}`",
                shown.escape_debug()
            )));
        }
    };
    if status != expect_status {
        return Some(Err(format!(
            "http status {status}, expected {expect_status}"
        )));
    }
    let Some(expect) = expect_body else {
        return Some(Ok(()));
    };
    let Some((head_len, body_start)) = find(response, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| find(response, b"\n\n").map(|i| (i, i + 2)))
    else {
        return eof.then(|| Err("response ended in the headers".to_owned()));
    };
    let body = &response[body_start..];
    let complete =
        eof || content_length(&response[..head_len]).is_some_and(|length| body.len() >= length);
    if !complete {
        return None;
    }
    Some(if find(body, expect.as_bytes()).is_some() {
        Ok(())
    } else if response.len() >= MAX_HTTP_RESPONSE {
        Err(format!(
            "body does not contain `{}` in the first {} KiB of the response",
            expect.escape_debug(),
            MAX_HTTP_RESPONSE / 1024
        ))
    } else {
        Err(format!("body does not contain `{}`", expect.escape_debug()))
    })
}

/// The status code of `HTTP/1.x NNN[ reason]`.
fn parse_status_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut chars = rest.chars();
    if !chars.next()?.is_ascii_digit() || chars.next()? != ' ' {
        return None;
    }
    let rest = chars.as_str();
    let code = rest.get(..3)?;
    if !code.bytes().all(|c| c.is_ascii_digit())
        || !matches!(rest.as_bytes().get(3), None | Some(b' '))
    {
        return None;
    }
    code.parse().ok()
}

/// The Content-Length of a response head, if it has a valid one.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head)
        .lines()
        .skip(1)
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn udp(address: SocketAddr, send: &str, expect: Option<&str>) -> Result<(), String> {
    let local: SocketAddr = match address {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("bind: {}", describe(&e)))?;
    socket
        .connect(address)
        .await
        .map_err(|e| format!("connect: {}", describe(&e)))?;
    socket
        .send(send.as_bytes())
        .await
        .map_err(|e| format!("send: {}", describe(&e)))?;
    // A connected UDP socket reports an ICMP port unreachable as
    // ECONNREFUSED here.
    let mut reply = vec![0; 65_536];
    let n = socket
        .recv(&mut reply)
        .await
        .map_err(|e| format!("recv: {}", describe(&e)))?;
    match expect {
        Some(expect) if find(&reply[..n], expect.as_bytes()).is_none() => Err(format!(
            "reply does not contain `{}`",
            expect.escape_debug()
        )),
        _ => Ok(()),
    }
}

async fn exec(command: &[String], target: &Target, timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err("empty command".to_owned());
    };
    let mut child = Command::new(program)
        .args(args)
        .env("HA_BACKEND_ADDRESS", target.address.to_string())
        .env("HA_BACKEND_PORT", target.port.to_string())
        .env("HA_VIP_ADDRESS", target.vip.to_string())
        .env("HA_VIP_PORT", target.vip_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so a timeout kills what it started too;
        // and killed if this task is aborted.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn {program}: {}", describe(&e)))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => exit_result(status),
        Ok(Err(e)) => Err(format!("wait: {}", describe(&e))),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                // SAFETY: kill(2) has no memory effects. The child is not
                // reaped yet, so its pid still names its process group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            // Kills the child itself too and reaps it.
            let _ = child.kill().await;
            Err(timed_out(timeout))
        }
    }
}

fn exit_result(status: ExitStatus) -> Result<(), String> {
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(format!("exit status {code}")),
        (None, Some(signal)) => Err(format!("killed by signal {signal}")),
        (None, None) => Err(format!("{status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{net::Ipv6Addr, path::Path};

    use tokio::{
        io::AsyncBufReadExt,
        net::TcpListener,
        sync::{mpsc, oneshot},
        time::{sleep, timeout},
    };

    use crate::config;

    /// Generous bound for "arrives within" on a loaded machine.
    const PATIENCE: Duration = Duration::from_secs(20);
    const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    fn target(address: IpAddr, port: u16) -> Target {
        Target {
            address,
            port,
            vip: "198.18.0.100".parse().unwrap(),
            vip_port: 80,
        }
    }

    /// A port on `address` that nothing listens on (bound, then closed).
    async fn closed_port(address: IpAddr) -> u16 {
        let listener = TcpListener::bind((address, 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// Whether [::1] can be used here (IPv6 may be off in containers).
    async fn ipv6_available() -> bool {
        let ok = TcpListener::bind((LOCAL6, 0)).await.is_ok();
        if !ok {
            eprintln!("IPv6 loopback unavailable: skipping the IPv6 part");
        }
        ok
    }

    // --- RiseFall ---------------------------------------------------------

    /// Feeds `results` ('+' success, '-' failure) and returns what
    /// `record` said for each: '^' up, 'v' down, '.' no change.
    fn run(rise: u32, fall: u32, initially_up: bool, results: &str) -> String {
        let mut state = RiseFall::new(rise, fall, initially_up);
        assert_eq!(state.is_up(), initially_up);
        results
            .chars()
            .map(|c| {
                let flip = state.record(c == '+');
                if let Some(up) = flip {
                    assert_eq!(up, state.is_up());
                }
                match flip {
                    Some(true) => '^',
                    Some(false) => 'v',
                    None => '.',
                }
            })
            .collect()
    }

    #[test]
    fn rise_fall_table() {
        #[rustfmt::skip]
        let table = [
            // rise, fall, initially up, results, flips
            (2, 3, false, "++",          ".^"),
            (2, 3, false, "+-+-+-",      "......"),
            (2, 3, false, "+-++",        "...^"),
            (2, 3, false, "---++",       "....^"),
            (2, 3, true,  "---",         "..v"),
            (2, 3, true,  "--+--+--",    "........"),
            (2, 3, true,  "++--+---",    ".......v"),
            (2, 3, true,  "---++---",    "..v.^..v"),
            (2, 3, true,  "---+-++",     "..v...^"),
            (3, 1, false, "+++-+++",     "..^v..^"),
            (3, 1, true,  "-++-+++",     "v.....^"),
            (1, 1, false, "+-+--++",     "^v^v.^."),
            (1, 1, true,  "++--+",       "..v.^"),
            (5, 5, false, "++++-+++++",  ".........^"),
        ];
        for (rise, fall, initially_up, results, flips) in table {
            assert_eq!(
                run(rise, fall, initially_up, results),
                flips,
                "rise {rise} fall {fall} up {initially_up}: {results}"
            );
        }
    }

    #[test]
    fn rise_fall_exhaustive() {
        // Against a direct definition, for every sequence of 10 results:
        // the state flips when the last `rise` (down) or `fall` (up)
        // results since the last flip all disagree with it.
        for (rise, fall) in [(1, 1), (1, 3), (2, 3), (3, 2), (4, 4)] {
            for initially_up in [false, true] {
                for bits in 0u32..1 << 10 {
                    let mut state = RiseFall::new(rise, fall, initially_up);
                    let mut up = initially_up;
                    let mut since_flip: Vec<bool> = Vec::new();
                    for i in 0..10 {
                        let success = bits >> i & 1 == 1;
                        since_flip.push(success);
                        let needed = if up { fall } else { rise } as usize;
                        let flips = since_flip.len() >= needed
                            && since_flip[since_flip.len() - needed..]
                                .iter()
                                .all(|&s| s != up);
                        let got = state.record(success);
                        if flips {
                            up = !up;
                            since_flip.clear();
                            assert_eq!(got, Some(up));
                        } else {
                            assert_eq!(got, None);
                        }
                        assert_eq!(state.is_up(), up);
                    }
                }
            }
        }
    }

    #[test]
    fn rise_fall_zero_counts_as_one() {
        assert_eq!(run(0, 0, false, "+-"), "^v");
    }

    // --- tcp --------------------------------------------------------------

    #[tokio::test]
    async fn tcp_listening_port_is_healthy() {
        let listener = TcpListener::bind((LOCAL4, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = target(LOCAL4, port);
        assert_eq!(check_once(&CheckKind::Tcp, &t, PATIENCE).await, Ok(()));
        if ipv6_available().await {
            let listener = TcpListener::bind((LOCAL6, 0)).await.unwrap();
            let t = target(LOCAL6, listener.local_addr().unwrap().port());
            assert_eq!(check_once(&CheckKind::Tcp, &t, PATIENCE).await, Ok(()));
        }
    }

    #[tokio::test]
    async fn tcp_closed_port_is_refused() {
        let t = target(LOCAL4, closed_port(LOCAL4).await);
        assert_eq!(
            check_once(&CheckKind::Tcp, &t, PATIENCE).await,
            Err("connect: connection refused".to_owned())
        );
    }

    #[tokio::test]
    async fn none_is_always_healthy() {
        let t = target(LOCAL4, closed_port(LOCAL4).await);
        assert_eq!(check_once(&CheckKind::None, &t, PATIENCE).await, Ok(()));
    }

    // --- http -------------------------------------------------------------

    /// Serves one HTTP connection on `address`: reads the request head,
    /// answers `response`, closes. Returns the port and the request head.
    async fn http_server(address: IpAddr, response: String) -> (u16, oneshot::Receiver<String>) {
        let listener = TcpListener::bind((address, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = tokio::io::BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head += &line;
            }
            stream
                .get_mut()
                .write_all(response.as_bytes())
                .await
                .unwrap();
            stream.get_mut().shutdown().await.unwrap();
            let _ = tx.send(head);
        });
        (port, rx)
    }

    fn http_kind(expect_status: u16, expect_body: Option<&str>, host: Option<&str>) -> CheckKind {
        CheckKind::Http {
            path: "/healthz".into(),
            host: host.map(str::to_owned),
            expect_status,
            expect_body: expect_body.map(str::to_owned),
        }
    }

    const OK_RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall ok\n";

    #[tokio::test]
    async fn http_200_is_healthy_and_sends_a_proper_request() {
        let (port, request) = http_server(LOCAL4, OK_RESPONSE.into()).await;
        let t = target(LOCAL4, port);
        assert_eq!(
            check_once(&http_kind(200, None, None), &t, PATIENCE).await,
            Ok(())
        );
        let request = request.await.unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.0\r\n"),
            "{request}"
        );
        // The default Host: the backend's address and port.
        assert!(
            request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{request}"
        );
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn http_sends_the_configured_host() {
        let (port, request) = http_server(LOCAL4, OK_RESPONSE.into()).await;
        let kind = http_kind(200, None, Some("www.example.org"));
        assert_eq!(
            check_once(&kind, &target(LOCAL4, port), PATIENCE).await,
            Ok(())
        );
        let request = request.await.unwrap();
        assert!(
            request.contains("\r\nHost: www.example.org\r\n"),
            "{request}"
        );
        assert_eq!(request.matches("Host:").count(), 1, "{request}");
    }

    #[tokio::test]
    async fn http_over_ipv6_brackets_the_host() {
        if !ipv6_available().await {
            return;
        }
        let (port, request) = http_server(LOCAL6, OK_RESPONSE.into()).await;
        let t = target(LOCAL6, port);
        assert_eq!(
            check_once(&http_kind(200, None, None), &t, PATIENCE).await,
            Ok(())
        );
        let request = request.await.unwrap();
        assert!(
            request.contains(&format!("\r\nHost: [::1]:{port}\r\n")),
            "{request}"
        );
    }

    #[tokio::test]
    async fn http_wrong_status_fails_naming_both() {
        let response = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        let (port, _) = http_server(LOCAL4, response.into()).await;
        assert_eq!(
            check_once(&http_kind(200, None, None), &target(LOCAL4, port), PATIENCE).await,
            Err("http status 503, expected 200".to_owned())
        );
        // 503 may be what is expected.
        let (port, _) = http_server(LOCAL4, response.into()).await;
        assert_eq!(
            check_once(&http_kind(503, None, None), &target(LOCAL4, port), PATIENCE).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn http_body_substring() {
        let (port, _) = http_server(LOCAL4, OK_RESPONSE.into()).await;
        let kind = http_kind(200, Some("ok"), None);
        assert_eq!(
            check_once(&kind, &target(LOCAL4, port), PATIENCE).await,
            Ok(())
        );

        let (port, _) = http_server(LOCAL4, OK_RESPONSE.into()).await;
        let kind = http_kind(200, Some("ready"), None);
        assert_eq!(
            check_once(&kind, &target(LOCAL4, port), PATIENCE).await,
            Err("body does not contain `ready`".to_owned())
        );
        // Only the body counts, not the headers.
        let (port, _) = http_server(LOCAL4, OK_RESPONSE.into()).await;
        let kind = http_kind(200, Some("text/plain"), None);
        assert!(
            check_once(&kind, &target(LOCAL4, port), PATIENCE)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn http_body_by_content_length_without_eof() {
        // A server that keeps the connection open after a complete body.
        let listener = TcpListener::bind((LOCAL4, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0; 1024];
            let _ = stream.read(&mut buf).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine")
                .await
                .unwrap();
            sleep(Duration::from_secs(60)).await;
        });
        let kind = http_kind(200, Some("nope"), None);
        // Fails for the body, not by timing out.
        assert_eq!(
            check_once(&kind, &target(LOCAL4, port), PATIENCE).await,
            Err("body does not contain `nope`".to_owned())
        );
        server.abort();
    }

    #[tokio::test]
    async fn http_refused() {
        let t = target(LOCAL4, closed_port(LOCAL4).await);
        assert_eq!(
            check_once(&http_kind(200, None, None), &t, PATIENCE).await,
            Err("connect: connection refused".to_owned())
        );
    }

    #[tokio::test]
    async fn http_timeout_when_the_server_never_answers() {
        let listener = TcpListener::bind((LOCAL4, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            sleep(Duration::from_secs(60)).await;
        });
        let started = Instant::now();
        let result = check_once(
            &http_kind(200, None, None),
            &target(LOCAL4, port),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(result, Err("timeout after 200ms".to_owned()));
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < PATIENCE, "{elapsed:?}");
        server.abort();
    }

    #[test]
    fn judge_http_responses() {
        let judge = |response: &str, eof, expect_body| {
            judge_http(response.as_bytes(), eof, 200, expect_body)
        };
        assert_eq!(judge("", false, None), None);
        assert_eq!(judge("HTTP/1.1 200", false, None), None);
        assert_eq!(judge("HTTP/1.1 200 OK\r\n", false, None), Some(Ok(())));
        assert_eq!(judge("HTTP/1.0 200\n", false, None), Some(Ok(())));
        assert_eq!(
            judge("", true, None),
            Some(Err("connection closed without a response".into()))
        );
        assert_eq!(
            judge("HTTP/1.1 20", true, None),
            Some(Err("no status line".into()))
        );
        for bad in [
            "HTTP/2 200 OK",
            "HTTP/1.1 2000",
            "HTTP/1.1  200",
            "http/1.1 200",
            "SSH-2.0-OpenSSH",
        ] {
            let verdict = judge(&format!("{bad}\r\n"), false, None);
            assert!(
                matches!(&verdict, Some(Err(e)) if e.starts_with("malformed status line")),
                "{bad}: {verdict:?}"
            );
        }
        assert_eq!(
            judge("HTTP/1.1 404 Not Found\r\n", false, None),
            Some(Err("http status 404, expected 200".into()))
        );
        // Bodies: judged when complete (EOF or Content-Length).
        let head = "HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
        assert_eq!(judge(head, false, Some("ok")), None);
        assert_eq!(judge(&format!("{head}is ok"), false, Some("ok")), None);
        assert_eq!(
            judge(&format!("{head}is ok"), true, Some("ok")),
            Some(Ok(()))
        );
        assert_eq!(
            judge(&format!("{head}is bad"), true, Some("ok")),
            Some(Err("body does not contain `ok`".into()))
        );
        let sized = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(judge(&format!("{sized}is o"), false, Some("ok")), None);
        assert_eq!(
            judge(&format!("{sized}is ok"), false, Some("ok")),
            Some(Ok(()))
        );
        assert_eq!(
            judge("HTTP/1.1 200 OK\r\nX: y\r\n", true, Some("ok")),
            Some(Err("response ended in the headers".into()))
        );
        // Bare LF line ends.
        assert_eq!(
            judge("HTTP/1.1 200 OK\nX: y\n\nok", true, Some("ok")),
            Some(Ok(()))
        );
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status_line("HTTP/1.0 500"), Some(500));
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\nContent-Length:  12 \r\n"),
            Some(12)
        );
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\nX-Content-Length: 12\r\n"),
            None
        );
    }

    #[test]
    fn default_host_header() {
        assert_eq!(default_host("10.0.0.1:80".parse().unwrap()), "10.0.0.1");
        assert_eq!(
            default_host("10.0.0.1:8080".parse().unwrap()),
            "10.0.0.1:8080"
        );
        assert_eq!(
            default_host("[2001:db8::1]:80".parse().unwrap()),
            "[2001:db8::1]"
        );
        assert_eq!(
            default_host("[2001:db8::1]:81".parse().unwrap()),
            "[2001:db8::1]:81"
        );
    }

    // --- udp --------------------------------------------------------------

    /// A UDP server on `address` answering every datagram with
    /// `prefix` + the datagram.
    async fn udp_echo(address: IpAddr, prefix: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind((address, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut buf = vec![0; 65_536];
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                let reply = [prefix.as_bytes(), &buf[..n]].concat();
                socket.send_to(&reply, from).await.unwrap();
            }
        });
        (port, server)
    }

    fn udp_kind(send: &str, expect: Option<&str>) -> CheckKind {
        CheckKind::Udp {
            send: send.into(),
            expect: expect.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn udp_echo_is_healthy() {
        let (port, server) = udp_echo(LOCAL4, "p").await;
        let t = target(LOCAL4, port);
        assert_eq!(
            check_once(&udp_kind("ing", Some("ping")), &t, PATIENCE).await,
            Ok(())
        );
        // Any reply counts without `expect`, even to an empty datagram.
        assert_eq!(check_once(&udp_kind("", None), &t, PATIENCE).await, Ok(()));
        server.abort();
        if ipv6_available().await {
            let (port, server) = udp_echo(LOCAL6, "").await;
            let t = target(LOCAL6, port);
            assert_eq!(
                check_once(&udp_kind("pong", Some("pong")), &t, PATIENCE).await,
                Ok(())
            );
            server.abort();
        }
    }

    #[tokio::test]
    async fn udp_expect_mismatch_fails() {
        let (port, server) = udp_echo(LOCAL4, "").await;
        let t = target(LOCAL4, port);
        assert_eq!(
            check_once(&udp_kind("ping", Some("pong")), &t, PATIENCE).await,
            Err("reply does not contain `pong`".to_owned())
        );
        server.abort();
    }

    #[tokio::test]
    async fn udp_nothing_listening_fails() {
        let socket = UdpSocket::bind((LOCAL4, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        let result = check_once(
            &udp_kind("ping", None),
            &target(LOCAL4, port),
            Duration::from_secs(2),
        )
        .await;
        // Normally refused (ICMP port unreachable); a timeout if ICMP is
        // rate-limited.
        assert!(
            result == Err("recv: connection refused".to_owned())
                || result == Err("timeout after 2s".to_owned()),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn udp_silent_server_times_out() {
        let socket = UdpSocket::bind((LOCAL4, 0)).await.unwrap();
        let t = target(LOCAL4, socket.local_addr().unwrap().port());
        assert_eq!(
            check_once(&udp_kind("ping", None), &t, Duration::from_millis(100)).await,
            Err("timeout after 100ms".to_owned())
        );
    }

    // --- exec -------------------------------------------------------------

    fn sh(script: &str) -> CheckKind {
        CheckKind::Exec {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        }
    }

    #[tokio::test]
    async fn exec_exit_status() {
        let t = target(LOCAL4, 8080);
        assert_eq!(check_once(&sh("exit 0"), &t, PATIENCE).await, Ok(()));
        assert_eq!(
            check_once(&sh("exit 1"), &t, PATIENCE).await,
            Err("exit status 1".into())
        );
        assert_eq!(
            check_once(&sh("exit 2"), &t, PATIENCE).await,
            Err("exit status 2".into())
        );
        assert_eq!(
            check_once(&sh("kill -9 $$"), &t, PATIENCE).await,
            Err("killed by signal 9".into())
        );
        let missing = CheckKind::Exec {
            command: vec!["/nonexistent/check".into()],
        };
        assert_eq!(
            check_once(&missing, &t, PATIENCE).await,
            Err("spawn /nonexistent/check: no such file or directory".into())
        );
    }

    #[tokio::test]
    async fn exec_sees_the_backend_in_its_environment() {
        let t = target(LOCAL4, 8080);
        let script = r#"test "$HA_BACKEND_ADDRESS" = 127.0.0.1 && test "$HA_BACKEND_PORT" = 8080 && test "$HA_VIP_ADDRESS" = 198.18.0.100 && test "$HA_VIP_PORT" = 80"#;
        assert_eq!(check_once(&sh(script), &t, PATIENCE).await, Ok(()));
        let script = r#"test "$HA_BACKEND_ADDRESS" = 127.0.0.2"#;
        assert_eq!(
            check_once(&sh(script), &t, PATIENCE).await,
            Err("exit status 1".into())
        );
        // Arguments are passed as they are, without a shell.
        let kind = CheckKind::Exec {
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                "test \"$0\" = 'a b'".into(),
                "a b".into(),
            ],
        };
        assert_eq!(check_once(&kind, &t, PATIENCE).await, Ok(()));
    }

    /// Whether process `pid` is gone (or a zombie nobody reaped yet).
    fn dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| {
                matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))
            }),
        }
    }

    #[tokio::test]
    async fn exec_is_killed_at_the_timeout_with_its_children() {
        let dir = std::env::temp_dir().join(format!("ha-health-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("pid");
        // The shell waits for a background child: both must die.
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let started = Instant::now();
        let result = check_once(
            &sh(&script),
            &target(LOCAL4, 80),
            Duration::from_millis(300),
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(result, Err("timeout after 300ms".to_owned()));
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        // The grandchild is dead too (within a generous bound).
        let pid: u32 = wait_for_file(&pid_file).await.trim().parse().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !dead(pid) {
            assert!(
                Instant::now() < deadline,
                "sleep {pid} survived the timeout"
            );
            sleep(Duration::from_millis(20)).await;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    async fn wait_for_file(path: &Path) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                if text.ends_with('\n') {
                    return text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never written",
                path.display()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn exec_sleep_is_killed_quickly() {
        let started = Instant::now();
        let kind = CheckKind::Exec {
            command: vec!["/bin/sleep".into(), "5".into()],
        };
        let kind = if Path::new("/bin/sleep").exists() {
            kind
        } else {
            sh("sleep 5")
        };
        let result = check_once(&kind, &target(LOCAL4, 80), Duration::from_millis(100)).await;
        assert_eq!(result, Err("timeout after 100ms".to_owned()));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    // --- spawn_checks -----------------------------------------------------

    /// A config with one VIP whose two backends are 127.0.0.1 and
    /// 127.0.0.2 (both loopback), checked on `port`. Validation rejects
    /// loopback backends, so the addresses are put in after parsing.
    fn two_backend_config(port: u16) -> Config {
        let text = r#"
[node]
name = "lb1"
interface = "eth0"
[health]
interval = "50ms"
timeout = "50ms"
rise = 2
fall = 2
[[vip]]
address = "198.18.0.100"
port = 80
protocol = "tcp"
  [vip.check]
  type = "tcp"
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.0.12"
"#;
        let mut config = config::parse(Path::new("test.toml"), text).unwrap();
        let vip = &mut config.vips[0];
        vip.backends[0].address = LOCAL4;
        vip.backends[1].address = "127.0.0.2".parse().unwrap();
        vip.check.port = port;
        config
    }

    #[tokio::test]
    async fn spawn_checks_reports_flips_only() {
        let up = TcpListener::bind((LOCAL4, 0)).await.unwrap();
        let port = up.local_addr().unwrap().port();
        let config = two_backend_config(port);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let checks = spawn_checks(&config, &BTreeSet::new(), tx);
        assert_eq!(checks.len(), 2);

        let down = timeout(PATIENCE, rx.recv())
            .await
            .expect("no transition")
            .unwrap();
        assert_eq!(down.key, BackendKey { vip: 0, backend: 1 });
        assert!(!down.up);
        assert_eq!(
            down.cause,
            "tcp check failed 2 times in a row (last: connect: connection refused)"
        );
        // Nothing else: backend 0 stays up, backend 1 stays down.
        sleep(Duration::from_millis(500)).await;
        assert!(rx.try_recv().is_err());

        let _second = TcpListener::bind(("127.0.0.2".parse::<IpAddr>().unwrap(), port))
            .await
            .unwrap();
        let back = timeout(PATIENCE, rx.recv())
            .await
            .expect("no transition")
            .unwrap();
        assert_eq!(back.key, BackendKey { vip: 0, backend: 1 });
        assert!(back.up);
        assert_eq!(back.cause, "tcp check passed 2 times in a row");
        assert!(back.at > down.at);

        // Dropping the handle stops the checks: the sender goes away.
        drop(checks);
        let end = timeout(PATIENCE, async { while rx.recv().await.is_some() {} }).await;
        assert!(end.is_ok(), "checks still running after drop");
        drop(up);
    }

    #[tokio::test]
    async fn spawn_checks_starting_down_reports_rise() {
        let listener = TcpListener::bind((LOCAL4, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = two_backend_config(port);
        config.vips[0].backends.truncate(1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _checks = spawn_checks(&config, &[BackendKey { vip: 0, backend: 0 }].into(), tx);
        let up = timeout(PATIENCE, rx.recv())
            .await
            .expect("no transition")
            .unwrap();
        assert_eq!((up.key, up.up), (BackendKey { vip: 0, backend: 0 }, true));
    }

    #[tokio::test]
    async fn spawn_checks_skips_none() {
        let mut config = two_backend_config(closed_port(LOCAL4).await);
        config.vips[0].check.kind = CheckKind::None;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let checks = spawn_checks(&config, &BTreeSet::new(), tx);
        assert!(checks.is_empty());
        // No task holds a sender: the channel is closed at once.
        assert_eq!(timeout(PATIENCE, rx.recv()).await.unwrap(), None);
    }

    #[test]
    fn causes() {
        let mut check = two_backend_config(80).vips[0].check.clone();
        check.rise = 1;
        check.fall = 1;
        assert_eq!(cause(&check, None), "tcp check passed once");
        assert_eq!(
            cause(&check, Some("timeout after 50ms")),
            "tcp check failed once (last: timeout after 50ms)"
        );
    }
}
