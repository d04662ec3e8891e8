//! A tiny HTTP/1.1 server for `GET /metrics`. It owns no state: each
//! scrape asks the agent through a channel for the rendered text.
//!
//! One request per connection (`Connection: close`). The request head is
//! read within [`HEAD_TIMEOUT`] and at most [`MAX_HEAD`] bytes; then
//! `GET` or `HEAD /metrics` (any query string) is 200 with
//! [`CONTENT_TYPE`], another path 404, another method on `/metrics` 405, a
//! malformed head 400, a head too slow 408, too large 431, an HTTP version
//! other than 1.0/1.1 505, and 503 when the agent does not answer within
//! [`RENDER_TIMEOUT`]. Headers are checked for shape only; `Host` is not
//! required. At most [`MAX_CONNECTIONS`] connections are served at once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::CONTENT_TYPE;

#[cfg(test)]
mod tests;

/// Largest request head (request line and headers) the server reads.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the agent has to answer a scrape.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After responding, how long unread request bytes are drained before the
/// socket closes (closing with unread data would reset the connection and
/// could destroy the response in flight).
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes drained after responding.
const MAX_LINGER_BYTES: u64 = 64 * 1024;
/// Connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// The server's bounds (tests shorten the times).
#[derive(Clone, Copy, Debug)]
struct Limits {
    head_bytes: usize,
    head_timeout: Duration,
    render_timeout: Duration,
    write_timeout: Duration,
    linger: Duration,
    connections: usize,
}

const LIMITS: Limits = Limits {
    head_bytes: MAX_HEAD,
    head_timeout: HEAD_TIMEOUT,
    render_timeout: RENDER_TIMEOUT,
    write_timeout: WRITE_TIMEOUT,
    linger: LINGER,
    connections: MAX_CONNECTIONS,
};

/// Serves `GET /metrics` on `listener`, one request per connection, until
/// the receiver of `snapshots` is dropped. Each scrape sends a oneshot
/// sender through `snapshots`; the text sent back is the response body
/// (rendered by [`render`]). Accept errors are logged and retried; client
/// errors are answered and logged at debug level.
pub async fn serve(listener: TcpListener, snapshots: mpsc::Sender<oneshot::Sender<String>>) {
    serve_with(listener, snapshots, LIMITS).await
}

async fn serve_with(
    listener: TcpListener,
    snapshots: mpsc::Sender<oneshot::Sender<String>>,
    limits: Limits,
) {
    let permits = Arc::new(Semaphore::new(limits.connections));
    loop {
        let permit = tokio::select! {
            _ = snapshots.closed() => return,
            permit = permits.clone().acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
        };
        let accepted = tokio::select! {
            _ = snapshots.closed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let snapshots = snapshots.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, &snapshots, limits).await {
                        tracing::debug!(%peer, error = %e, "metrics: connection failed");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // E.g. out of file descriptors: do not spin.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request, answers it and closes the connection.
async fn connection(
    mut stream: TcpStream,
    snapshots: &mpsc::Sender<oneshot::Sender<String>>,
    limits: Limits,
) -> io::Result<()> {
    let head = tokio::time::timeout(
        limits.head_timeout,
        read_head(&mut stream, limits.head_bytes),
    )
    .await;
    let (response, head_only) = match head {
        Err(_) => (
            Response::error(408, "request head not received in time\n"),
            false,
        ),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::Incomplete)) => (Response::error(400, "incomplete request head\n"), false),
        Ok(Ok(Head::TooLarge)) => (
            Response::error(
                431,
                &format!("the request head exceeds {} bytes\n", limits.head_bytes),
            ),
            false,
        ),
        Ok(Ok(Head::Complete(head))) => match parse_head(&head) {
            Err(response) => (response, false),
            Ok(request) => (
                respond(request.route, snapshots, limits).await,
                request.head_only,
            ),
        },
    };
    let bytes = response.encode(head_only);
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(limits.write_timeout, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not taken in time"))??;
    // Lingering close: take what the client still sends (a body, the rest
    // of an oversized head) until it closes, so that our close does not
    // reset the connection under the response.
    let mut rest = (&mut stream).take(MAX_LINGER_BYTES);
    let _ = tokio::time::timeout(
        limits.linger,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
    Ok(())
}

/// How reading a request head ended.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head, up to and including the empty line.
    Complete(Vec<u8>),
    /// The client closed before sending a byte.
    Closed,
    /// The client closed in the middle of the head.
    Incomplete,
    /// No end of head within the limit.
    TooLarge,
}

/// Reads until the empty line that ends a request head (CRLF or bare LF
/// line ends), at most `max` bytes.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), max: usize) -> io::Result<Head> {
    let mut buf = vec![0; max];
    let mut len = 0;
    loop {
        if len == max {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(if len == 0 {
                Head::Closed
            } else {
                Head::Incomplete
            });
        }
        // The end may straddle two reads.
        let from = len.saturating_sub(2);
        len += n;
        if let Some(end) = head_end(&buf[..len], from) {
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
    }
}

/// The length of the head in `buf` (through the `\n` of its empty line),
/// looking for that `\n` from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from.max(1)..buf.len())
        .find(|&i| {
            buf[i] == b'\n'
                && (buf[i - 1] == b'\n' || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'))
        })
        .map(|i| i + 1)
}

/// What a well-formed request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    route: Route,
    /// HEAD: the response without its body.
    head_only: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
}

/// Parses a request head; a malformed one is answered with the error
/// response returned.
fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = |why: &str| Response::error(400, &format!("bad request: {why}\n"));
    let text = std::str::from_utf8(head).map_err(|_| bad("the head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    // Empty lines before the request line are allowed (RFC 9112 §2.2).
    let request_line = lines
        .by_ref()
        .find(|l| !l.is_empty())
        .ok_or_else(|| bad("no request line"))?;
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad("the request line is not `METHOD target HTTP/1.1`"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(bad("invalid method"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.len() == 8
            && v.starts_with("HTTP/")
            && v.as_bytes()[5].is_ascii_digit()
            && v.as_bytes()[6] == b'.'
            && v.as_bytes()[7].is_ascii_digit() =>
        {
            return Err(Response::error(
                505,
                "only HTTP/1.0 and HTTP/1.1 are served\n",
            ));
        }
        _ => return Err(bad("invalid HTTP version")),
    }
    // Origin form `/path?query`, or absolute form `http://host/path`.
    let path = if target.starts_with('/') {
        target
    } else if let Some((_, rest)) = target.split_once("://") {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else {
        return Err(bad("invalid request target"));
    };
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("invalid request target"));
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    for line in lines.take_while(|l| !l.is_empty()) {
        let name = line.split_once(':').map(|(name, _)| name);
        if !name.is_some_and(|n| !n.is_empty() && n.bytes().all(is_tchar)) {
            return Err(bad("invalid header line"));
        }
    }
    let head_only = method == "HEAD";
    let route = match (path, method) {
        ("/metrics", "GET" | "HEAD") => Route::Metrics,
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    };
    Ok(Request { route, head_only })
}

/// A token character (RFC 9110 §5.6.2): methods and header names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Answers a well-formed request.
async fn respond(
    route: Route,
    snapshots: &mpsc::Sender<oneshot::Sender<String>>,
    limits: Limits,
) -> Response {
    match route {
        Route::NotFound => Response::error(404, "not found: only /metrics is served\n"),
        Route::MethodNotAllowed => Response::error(405, "only GET and HEAD are allowed\n"),
        Route::Metrics => {
            let scrape = async {
                let (reply, text) = oneshot::channel();
                snapshots.send(reply).await.ok()?;
                text.await.ok()
            };
            match tokio::time::timeout(limits.render_timeout, scrape).await {
                Ok(Some(text)) => Response {
                    status: 200,
                    content_type: CONTENT_TYPE,
                    body: text,
                },
                _ => Response::error(503, "the agent did not answer\n"),
            }
        }
    }
}

/// A response, always with `Connection: close`.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn error(status: u16, body: &str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }

    /// Status line, headers and, unless `head_only`, the body.
    fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        };
        let allow = if self.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}
