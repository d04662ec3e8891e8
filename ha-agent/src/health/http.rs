//! The http check: `GET path` over a fresh connection, judged by status
//! and, optionally, a substring of the body.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{describe, find, tcp::connect};
use crate::config::MAX_HTTP_RESPONSE;

/// The Host header when none is configured: the backend's address (IPv6
/// in brackets) with the port unless it is 80 (RFC 9110 §7.2).
pub(super) fn default_host(address: SocketAddr) -> String {
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

pub(super) async fn check(
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
pub(super) fn judge_http(
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
pub(super) fn parse_status_line(line: &str) -> Option<u16> {
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
pub(super) fn content_length(head: &[u8]) -> Option<usize> {
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
