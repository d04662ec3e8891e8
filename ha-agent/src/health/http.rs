//! The http check: `GET path` over a fresh connection, judged by status
//! and, optionally, a substring of the body. The https check sends the
//! same request over TLS: [`exchange`] serves both.

use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{describe, find, tcp::connect};
use crate::config::MAX_HTTP_RESPONSE;

/// The Host header when none is configured: the backend's address (IPv6
/// in brackets) with the port unless it is the scheme's `default_port`
/// (80 for http, 443 for https; RFC 9110 §7.2).
pub(super) fn default_host(address: SocketAddr, default_port: u16) -> String {
    let host = match address.ip() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    match address.port() {
        port if port == default_port => host,
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

pub(super) async fn check(
    address: SocketAddr,
    path: &str,
    host: &str,
    expect_status: u16,
    expect_body: Option<&str>,
) -> Result<(), String> {
    let mut stream = connect(address).await?;
    exchange(&mut stream, path, host, expect_status, expect_body).await
}

/// Sends the request for `path` on `stream` (plain TCP or TLS) and judges
/// the response, reading at most [`MAX_HTTP_RESPONSE`] bytes of it.
pub(super) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
    host: &str,
    expect_status: u16,
    expect_body: Option<&str>,
) -> Result<(), String> {
    stream
        .write_all(http_request(path, host).as_bytes())
        .await
        .map_err(|e| format!("send: {}", describe(&e)))?;
    let mut response = Vec::with_capacity(4096);
    loop {
        let room = (MAX_HTTP_RESPONSE - response.len()) as u64;
        let n = match (&mut *stream).take(room).read_buf(&mut response).await {
            Ok(n) => n,
            // A TLS peer that closes the connection without a close_notify
            // alert, as many servers do after `Connection: close`: the
            // end of the response as for plain TCP.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(format!("recv: {}", describe(&e))),
        };
        let eof = n == 0 || response.len() >= MAX_HTTP_RESPONSE;
        if let Some(verdict) = judge_http(&response, eof, expect_status, expect_body) {
            return verdict;
        }
    }
}

/// Judges an HTTP response read so far (`eof`: nothing more will come),
/// pure. `None`: more is needed.
///
/// The status is judged as soon as the status line is complete; the body,
/// when `expect_body` asks for it, once it is complete: at EOF or when
/// `Content-Length` bytes followed the head.
pub(super) fn judge_http(
    response: &[u8],
    eof: bool,
    expect_status: u16,
    expect_body: Option<&str>,
) -> Option<Result<(), String>> {
    let head = match parse_head(response) {
        Ok(head) => head,
        Err(e) => return Some(Err(e)),
    };
    let Some(status) = head.status else {
        return eof.then(|| {
            Err(if response.is_empty() {
                "connection closed without a response".to_owned()
            } else {
                "no status line".to_owned()
            })
        });
    };
    if status != expect_status {
        return Some(Err(format!(
            "http status {status}, expected {expect_status}"
        )));
    }
    let Some(expect) = expect_body else {
        return Some(Ok(()));
    };
    let (head_len, content_length) = match head.end {
        HeadEnd::Complete {
            len,
            content_length,
        } => (len, content_length),
        HeadEnd::Incomplete => {
            return eof.then(|| Err("response ended in the headers".to_owned()));
        }
        HeadEnd::Malformed(e) => return Some(Err(format!("malformed response head: {e}"))),
    };
    let body = &response[head_len..];
    let complete = eof || content_length.is_some_and(|length| body.len() >= length);
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

/// What [`parse_head`] found in a response read so far.
struct Head {
    /// The status code, once the status line is complete.
    status: Option<u16>,
    end: HeadEnd,
}

/// Where the headers after a well-formed status line stand.
enum HeadEnd {
    /// More is needed.
    Incomplete,
    /// The head is `len` bytes; `content_length`: the body's length, if a
    /// valid `Content-Length` gives it.
    Complete {
        len: usize,
        content_length: Option<usize>,
    },
    /// httparse rejects them, e.g. for a NUL byte.
    Malformed(httparse::Error),
}

/// Header slots httparse is given at first; more when a response has more.
const FIRST_HEADER_SLOTS: usize = 32;
/// Every header line takes at least 3 bytes (`a:\n`), so this many slots
/// hold every header of a response that fits the read limit.
const MAX_HEADER_SLOTS: usize = MAX_HTTP_RESPONSE / 3 + 1;

/// Parses the head of `response` with httparse, leniently: header lines
/// httparse finds invalid are skipped (a check judges status and body, not
/// the server's header hygiene), but the status line must be well formed.
/// `Err`: the status line is malformed; a short reason, e.g.
/// ``malformed status line `SSH-2.0-OpenSSH` ``.
fn parse_head(response: &[u8]) -> Result<Head, String> {
    let mut parser = httparse::ParserConfig::default();
    parser
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .ignore_invalid_headers_in_responses(true);
    let mut slots = FIRST_HEADER_SLOTS;
    loop {
        let mut headers = vec![httparse::EMPTY_HEADER; slots];
        let mut parsed = httparse::Response::new(&mut headers);
        let result = parser.parse_response(&mut parsed, response);
        // `reason` is set exactly when the status line is complete.
        let status = parsed.reason.and(parsed.code);
        return match result {
            Ok(httparse::Status::Complete(len)) => Ok(Head {
                status,
                end: HeadEnd::Complete {
                    len,
                    content_length: content_length(parsed.headers),
                },
            }),
            Ok(httparse::Status::Partial) => Ok(Head {
                status,
                end: HeadEnd::Incomplete,
            }),
            Err(httparse::Error::TooManyHeaders) if slots < MAX_HEADER_SLOTS => {
                slots = (slots * 8).min(MAX_HEADER_SLOTS);
                continue;
            }
            Err(e) if status.is_some() => Ok(Head {
                status,
                end: HeadEnd::Malformed(e),
            }),
            Err(_) => Err(malformed_status_line(response)),
        };
    }
}

fn malformed_status_line(response: &[u8]) -> String {
    let line = response.split(|&c| c == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let shown: String = line.trim_end_matches('\r').chars().take(40).collect();
    format!("malformed status line `{}`", shown.escape_debug())
}

/// The first valid Content-Length among `headers`.
fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .find_map(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
}
