//! A tiny HTTP/1.1 server for `GET /metrics`. It owns no state: each
//! scrape asks the agent through a channel for the rendered text.
//!
//! One request per connection (`Connection: close`). The request head is
//! read within [`HEAD_TIMEOUT`] and at most [`MAX_HEAD`] bytes and parsed
//! with `httparse` (the crate hyper uses) as it arrives; then `GET` or
//! `HEAD /metrics` (any query string) is 200 with [`CONTENT_TYPE`],
//! another path 404, another method on `/metrics` 405, a malformed head
//! 400, a head too slow 408, too large or with more than [`MAX_HEADERS`]
//! fields 431, an HTTP version other than 1.0/1.1 505, and 503 when the
//! agent does not answer within [`RENDER_TIMEOUT`]. Header names and
//! values are checked for shape only; `Host` is not required. Bytes after
//! the head (a body, pipelined requests) are drained, never answered. At
//! most [`MAX_CONNECTIONS`] connections are served at once.

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
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Headers a request may carry; more are answered with 431. Scrapers send
/// a handful.
const MAX_HEADERS: usize = 64;
/// Time a client has to send its whole request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the agent has to answer a scrape.
pub(crate) const RENDER_TIMEOUT: Duration = Duration::from_secs(5);
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
/// (rendered by [`super::render`]). Accept errors are logged and retried;
/// client errors are answered and logged at debug level.
pub(crate) async fn serve(listener: TcpListener, snapshots: mpsc::Sender<oneshot::Sender<String>>) {
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
        Ok(Ok(Head::Rejected(response))) => (response, false),
        Ok(Ok(Head::Request(request))) => (
            respond(request.route, snapshots, limits).await,
            request.head_only,
        ),
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
    // of an oversized head, a pipelined request) until it closes, so that
    // our close does not reset the connection under the response.
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
    /// A well-formed request.
    Request(Request),
    /// A head that is not served, with the answer for it: malformed, cut
    /// off by the client, or larger than the limit.
    Rejected(Response),
    /// The client closed before sending a byte.
    Closed,
}

/// Reads until [`parse_head`] has a verdict, at most `max` bytes. Bytes
/// after the head (a body, a pipelined request) are left unread: one
/// request per connection.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), max: usize) -> io::Result<Head> {
    let mut buf = vec![0; max];
    let mut len = 0;
    loop {
        match parse_head(&buf[..len]) {
            Parsed::Partial => {}
            Parsed::Request(request) => return Ok(Head::Request(request)),
            Parsed::Rejected(response) => return Ok(Head::Rejected(response)),
        }
        if len == max {
            return Ok(Head::Rejected(Response::error(
                431,
                &format!("the request head exceeds {max} bytes\n"),
            )));
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(if len == 0 {
                Head::Closed
            } else {
                Head::Rejected(Response::error(400, "incomplete request head\n"))
            });
        }
        len += n;
    }
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

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Not a whole head yet, and nothing wrong so far.
    Partial,
    Request(Request),
    /// Malformed, answered with this response.
    Rejected(Response),
}

/// Parses the start of a request with `httparse`: request line and header
/// lines (CRLF or bare LF line ends, empty lines before the request line
/// skipped, no folded headers), then routes it.
fn parse_head(buf: &[u8]) -> Parsed {
    let bad = |why: &str| Parsed::Rejected(Response::error(400, &format!("bad request: {why}\n")));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(_)) => {
            // Complete: method and path are set.
            let method = request.method.unwrap_or_default();
            let target = request.path.unwrap_or_default();
            match route(method, target) {
                Some(route) => Parsed::Request(Request {
                    route,
                    head_only: method == "HEAD",
                }),
                None => bad("invalid request target"),
            }
        }
        Err(httparse::Error::TooManyHeaders) => Parsed::Rejected(Response::error(
            431,
            &format!("more than {MAX_HEADERS} header fields\n"),
        )),
        Err(httparse::Error::Version) => match request_version(buf) {
            // httparse fails as soon as the version cannot be 1.0 or 1.1;
            // whether it is another one (505) shows once the line is whole.
            None => Parsed::Partial,
            Some(version) if is_http_version(version) => Parsed::Rejected(Response::error(
                505,
                "only HTTP/1.0 and HTTP/1.1 are served\n",
            )),
            Some(_) => bad("invalid HTTP version"),
        },
        Err(e) => bad(&e.to_string()),
    }
}

/// The route for a request target: origin form `/path?query` or absolute
/// form `http://host/path`; `None` for any other form.
fn route(method: &str, target: &str) -> Option<Route> {
    let path = if target.starts_with('/') {
        target
    } else if let Some((_, rest)) = target.split_once("://") {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else {
        return None;
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    Some(match (path, method) {
        ("/metrics", "GET" | "HEAD") => Route::Metrics,
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    })
}

/// What follows the second space of the request line (after leading
/// empty lines), once the line is complete.
fn request_version(buf: &[u8]) -> Option<&[u8]> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let line = &buf[start..];
    let line = &line[..line.iter().position(|&b| b == b'\n')?];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.splitn(3, |&b| b == b' ').nth(2)
}

/// `HTTP/<digit>.<digit>`.
fn is_http_version(version: &[u8]) -> bool {
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
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
