use super::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

// -- the request head ---------------------------------------------------

/// The verdict on a whole head: its route and whether it is HEAD, or the
/// status of the error response.
fn verdict(head: &[u8]) -> Result<(Route, bool), u16> {
    match parse_head(head) {
        Parsed::Request(request) => Ok((request.route, request.head_only)),
        Parsed::Rejected(response) => Err(response.status),
        Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(head)),
    }
}

#[test]
fn metrics_parse_head() {
    let route = |head: &str| verdict(head.as_bytes());
    let status = |head: &str| verdict(head.as_bytes()).unwrap_err();
    assert_eq!(
        route("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
        Ok((Route::Metrics, false))
    );
    assert_eq!(
        route("HEAD /metrics HTTP/1.0\n\n"),
        Ok((Route::Metrics, true))
    );
    assert_eq!(
        route("GET /metrics?a=b HTTP/1.1\r\n\r\n"),
        Ok((Route::Metrics, false))
    );
    assert_eq!(
        route("\r\nGET /metrics HTTP/1.1\r\n\r\n"),
        Ok((Route::Metrics, false))
    );
    assert_eq!(
        route("GET http://lb1:9810/metrics HTTP/1.1\r\n\r\n"),
        Ok((Route::Metrics, false))
    );
    assert_eq!(
        route("GET / HTTP/1.1\r\n\r\n"),
        Ok((Route::NotFound, false))
    );
    assert_eq!(
        route("GET http://lb1 HTTP/1.1\r\n\r\n"),
        Ok((Route::NotFound, false))
    );
    assert_eq!(
        route("GET /metricsx HTTP/1.1\r\n\r\n"),
        Ok((Route::NotFound, false))
    );
    assert_eq!(
        route("POST /metrics HTTP/1.1\r\n\r\n"),
        Ok((Route::MethodNotAllowed, false))
    );
    for bad in [
        "hello\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1 x\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n",
        "GET metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTX/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n: x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        "GET /met\x01rics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nA: b\x00c\r\n\r\n",
        "GET /metrics HTTP/1.1\rX\n\r\n",
    ] {
        assert_eq!(status(bad), 400, "{bad:?}");
    }
    assert_eq!(verdict(b"GET /\xff HTTP/1.1\r\n\r\n"), Err(400));
    assert_eq!(status("GET /metrics HTTP/2.0\r\n\r\n"), 505);
    assert_eq!(status("GET /metrics HTTP/1.2\r\n\r\n"), 505);
    // Empty lines before the request line are skipped (RFC 9112 §2.2),
    // so empty lines alone are not a head yet.
    assert_eq!(parse_head(b"\r\n\r\n"), Parsed::Partial);
    assert_eq!(parse_head(b"\n\n\n"), Parsed::Partial);
}

#[test]
fn metrics_parse_head_too_many_headers() {
    let head = |headers: usize| {
        let mut head = "GET /metrics HTTP/1.1\r\n".to_owned();
        for i in 0..headers {
            head.push_str(&format!("X-{i}: y\r\n"));
        }
        head + "\r\n"
    };
    assert_eq!(
        verdict(head(MAX_HEADERS).as_bytes()),
        Ok((Route::Metrics, false))
    );
    assert_eq!(verdict(head(MAX_HEADERS + 1).as_bytes()), Err(431));
}

/// Heads arrive in pieces: every proper prefix of a good head is partial,
/// the whole is a request whatever follows it (a body, a pipelined
/// request), and a malformed head is rejected once its fault is read.
#[test]
fn metrics_parse_head_partial() {
    for head in [
        &b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"[..],
        b"\r\nHEAD /metrics?x=1 HTTP/1.0\n\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        for end in 0..head.len() {
            assert_eq!(
                parse_head(&head[..end]),
                Parsed::Partial,
                "{:?}",
                String::from_utf8_lossy(&head[..end])
            );
        }
        let whole = verdict(head);
        assert!(whole.is_ok(), "{whole:?}");
        for rest in [&b"abc"[..], b"GET /other HTTP/1.1\r\n\r\n", b"\x00\xff"] {
            assert_eq!(verdict(&[head, rest].concat()), whole);
        }
    }
    // Faults show before the head ends.
    assert_eq!(verdict(b"G(T"), Err(400));
    assert_eq!(verdict(b"GET /metrics HTTP/1.1\r\nBad Name"), Err(400));
    // A version other than 1.0/1.1 is judged once its line is whole.
    assert_eq!(parse_head(b"GET /metrics HTTP/2"), Parsed::Partial);
    assert_eq!(parse_head(b"GET /metrics HTTP/2.0"), Parsed::Partial);
    assert_eq!(verdict(b"GET /metrics HTTP/2.0\r\n"), Err(505));
    assert_eq!(verdict(b"GET /metrics HTTP/2.0 x\n"), Err(400));
    assert_eq!(verdict(b"GET /metrics HTTP/20\n"), Err(400));
}

// -- the server ---------------------------------------------------------

/// Short limits, so that timeouts are quick to test.
const TEST_LIMITS: Limits = Limits {
    head_bytes: MAX_HEAD,
    head_timeout: Duration::from_millis(300),
    render_timeout: Duration::from_millis(300),
    write_timeout: Duration::from_secs(2),
    linger: Duration::from_millis(300),
    connections: 4,
};

/// A stand-in for the agent's main loop: answers every scrape with
/// `text`, or drops the reply when `text` is None.
fn agent(text: Option<&'static str>) -> mpsc::Sender<oneshot::Sender<String>> {
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<String>>(4);
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            if let Some(text) = text {
                let _ = reply.send(text.to_owned());
            }
        }
    });
    tx
}

/// A server on an ephemeral loopback port.
async fn start(
    snapshots: mpsc::Sender<oneshot::Sender<String>>,
    limits: Option<Limits>,
) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    match limits {
        None => tokio::spawn(serve(listener, snapshots)),
        Some(limits) => tokio::spawn(serve_with(listener, snapshots, limits)),
    };
    address
}

/// Sends `request` and reads the whole response (the server closes).
async fn exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(response).unwrap()
}

fn status_line(response: &str) -> &str {
    response.split("\r\n").next().unwrap()
}

const TEXT: &str = "# HELP ha_x X.\n# TYPE ha_x gauge\nha_x 1\n";

#[tokio::test]
async fn metrics_server_get() {
    let address = start(agent(Some(TEXT)), None).await;
    let response = exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        response,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TEXT}",
            TEXT.len()
        )
    );
    // HEAD: the same head, no body.
    let response = exchange(address, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            TEXT.len()
        )),
        "{response}"
    );
    // HTTP/1.0, bare LFs, a query string.
    let response = exchange(address, b"GET /metrics?x=1 HTTP/1.0\n\n").await;
    assert!(response.ends_with(TEXT), "{response}");
}

#[tokio::test]
async fn metrics_server_errors() {
    let address = start(agent(Some(TEXT)), Some(TEST_LIMITS)).await;
    let response = exchange(address, b"GET /other HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_line(&response), "HTTP/1.1 404 Not Found");
    assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    let response = exchange(
        address,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_line(&response), "HTTP/1.1 405 Method Not Allowed");
    assert!(response.contains("\r\nAllow: GET, HEAD\r\n"), "{response}");
    for garbage in [
        &b"hello there\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
    ] {
        let response = exchange(address, garbage).await;
        assert_eq!(status_line(&response), "HTTP/1.1 400 Bad Request");
    }
    // Closed in the middle of the head.
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert_eq!(status_line(&response), "HTTP/1.1 400 Bad Request");
    let response = exchange(address, b"GET /metrics HTTP/3.0\r\n\r\n").await;
    assert_eq!(
        status_line(&response),
        "HTTP/1.1 505 HTTP Version Not Supported"
    );
    // Still serving.
    let response = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(response.ends_with(TEXT), "{response}");
}

#[tokio::test]
async fn metrics_server_oversized_head() {
    let address = start(agent(Some(TEXT)), Some(TEST_LIMITS)).await;
    // Exactly the limit is fine.
    let mut head = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(MAX_HEAD - 4, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    let response = exchange(address, &head).await;
    assert!(response.ends_with(TEXT), "{response}");
    // One byte more is not, nor is an endless header.
    head.insert(30, b'a');
    let response = exchange(address, &head).await;
    assert_eq!(
        status_line(&response),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let mut head = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(4 * MAX_HEAD, b'a');
    let response = exchange(address, &head).await;
    assert_eq!(
        status_line(&response),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

#[tokio::test]
async fn metrics_server_head_in_pieces() {
    let address = start(agent(Some(TEXT)), None).await;
    // Byte by byte, each in its own segment.
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK");
    assert!(response.ends_with(TEXT), "{response}");
}

#[tokio::test]
async fn metrics_server_pipelined_requests() {
    let address = start(agent(Some(TEXT)), Some(TEST_LIMITS)).await;
    // One request per connection: the first is answered, then the
    // connection closes; what follows it is never read as a request.
    let response = exchange(
        address,
        b"GET /metrics HTTP/1.1\r\n\r\nGET /other HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK");
    assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
    assert!(response.ends_with(TEXT), "{response}");
    let response = exchange(
        address,
        b"GET /other HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(status_line(&response), "HTTP/1.1 404 Not Found");
    assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
}

#[tokio::test]
async fn metrics_server_slow_client_times_out() {
    let address = start(agent(Some(TEXT)), Some(TEST_LIMITS)).await;
    let start = Instant::now();
    // One client sends nothing, another only part of a head.
    let mut silent = TcpStream::connect(address).await.unwrap();
    let mut partial = TcpStream::connect(address).await.unwrap();
    partial.write_all(b"GET /metr").await.unwrap();
    // Meanwhile others are served.
    let response = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(response.ends_with(TEXT), "{response}");
    for stream in [&mut silent, &mut partial] {
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
            .await
            .expect("the server gives up")
            .unwrap();
        assert_eq!(status_line(&response), "HTTP/1.1 408 Request Timeout");
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= TEST_LIMITS.head_timeout && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn metrics_server_agent_does_not_answer() {
    // The reply is dropped.
    let address = start(agent(None), Some(TEST_LIMITS)).await;
    let response = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_line(&response), "HTTP/1.1 503 Service Unavailable");
    // The agent is stuck: the request is held but never answered.
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<String>>(4);
    let address = start(tx, Some(TEST_LIMITS)).await;
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(reply) = rx.recv().await {
            held.push(reply);
        }
    });
    let start = Instant::now();
    let response = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_line(&response), "HTTP/1.1 503 Service Unavailable");
    assert!(start.elapsed() >= TEST_LIMITS.render_timeout);
    held.abort();
}

#[tokio::test]
async fn metrics_server_stops_with_the_agent() {
    let (tx, rx) = mpsc::channel::<oneshot::Sender<String>>(4);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let server = tokio::spawn(serve(listener, tx));
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once the receiver is gone")
        .unwrap();
}
