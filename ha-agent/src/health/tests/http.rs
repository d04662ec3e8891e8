use super::*;
use crate::health::http::{default_host, judge_http};

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
    let judge =
        |response: &str, eof, expect_body| judge_http(response.as_bytes(), eof, 200, expect_body);
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
    // Status lines with and without a reason phrase.
    let status =
        |response: &str, expect_status| judge_http(response.as_bytes(), false, expect_status, None);
    assert_eq!(status("HTTP/1.1 204 No Content\r\n", 204), Some(Ok(())));
    assert_eq!(status("HTTP/1.0 500\r\n", 500), Some(Ok(())));
    // Content-Length: spaces around the value; only that exact header.
    let body = |head: &str| judge(&format!("{head}\r\n0123456789ok"), false, Some("ok"));
    assert_eq!(
        body("HTTP/1.1 200 OK\r\nContent-Length:  12 \r\n"),
        Some(Ok(()))
    );
    assert_eq!(body("HTTP/1.1 200 OK\r\nX-Content-Length: 12\r\n"), None);
}

/// Where parsing with httparse differs from reading the status line by
/// hand: the head is checked as a whole once the body matters.
#[test]
fn judge_http_edge_cases_of_httparse() {
    let judge = |response: &[u8], eof, expect_body| judge_http(response, eof, 200, expect_body);
    // Leading empty lines before the status line are skipped.
    assert_eq!(judge(b"\r\nHTTP/1.1 200 OK\r\n", false, None), Some(Ok(())));
    // A control character in the reason phrase makes the line malformed.
    let verdict = judge(b"HTTP/1.1 200 O\x01K\r\n", false, None);
    assert!(
        matches!(&verdict, Some(Err(e)) if e.starts_with("malformed status line")),
        "{verdict:?}"
    );
    // Invalid header lines are skipped, the body still judged.
    assert_eq!(
        judge(
            b"HTTP/1.1 200 OK\r\nbad header\r\nX: y\r\n\r\nok",
            true,
            Some("ok")
        ),
        Some(Ok(()))
    );
    // Obsolete line folding and spaces before the colon are tolerated:
    // the Content-Length after them still counts.
    assert_eq!(
        judge(
            b"HTTP/1.1 200 OK\r\nX: a\r\n  b\r\nContent-Length : 2\r\n\r\nok",
            false,
            Some("ok")
        ),
        Some(Ok(()))
    );
    // A NUL in the headers: the status still decides without expect_body,
    // the body is not trusted with it.
    let nul = b"HTTP/1.1 200 OK\r\nX: \x00\r\n\r\nok";
    assert_eq!(judge(nul, true, None), Some(Ok(())));
    let verdict = judge(nul, true, Some("ok"));
    assert!(
        matches!(&verdict, Some(Err(e)) if e.starts_with("malformed response head")),
        "{verdict:?}"
    );
    // More headers than the first header slots hold.
    let many: String = (0..1000).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let response = format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 2\r\n\r\nok");
    assert_eq!(judge(response.as_bytes(), false, Some("ok")), Some(Ok(())));
    // A chunked answer (to our HTTP/1.0 request, against the rules) is
    // searched as it came, chunk sizes included, as before.
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    assert_eq!(judge(chunked, true, Some("ok")), Some(Ok(())));
}

#[test]
fn default_host_header() {
    assert_eq!(default_host("10.0.0.1:80".parse().unwrap(), 80), "10.0.0.1");
    assert_eq!(
        default_host("10.0.0.1:8080".parse().unwrap(), 80),
        "10.0.0.1:8080"
    );
    assert_eq!(
        default_host("[2001:db8::1]:80".parse().unwrap(), 80),
        "[2001:db8::1]"
    );
    assert_eq!(
        default_host("[2001:db8::1]:81".parse().unwrap(), 80),
        "[2001:db8::1]:81"
    );
    // https: 443 is the default port, 80 is not.
    assert_eq!(
        default_host("10.0.0.1:443".parse().unwrap(), 443),
        "10.0.0.1"
    );
    assert_eq!(
        default_host("10.0.0.1:80".parse().unwrap(), 443),
        "10.0.0.1:80"
    );
}
