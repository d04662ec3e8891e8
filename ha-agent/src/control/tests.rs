use super::*;

#[test]
fn requests_round_trip_with_their_version() {
    let request = Request::Drain {
        vip: "web".into(),
        backend: "198.18.0.11".parse().unwrap(),
    };
    let line = encode(&request);
    assert_eq!(
        line,
        "{\"version\":1,\"command\":\"drain\",\"vip\":\"web\",\"backend\":\"198.18.0.11\"}\n"
    );
    assert_eq!(decode::<Request>(&line).unwrap(), request);
}

#[test]
fn other_versions_and_garbage_are_refused() {
    let err = decode::<Request>("{\"version\":2,\"command\":\"status\"}").unwrap_err();
    assert!(err.to_string().contains("version 2 not supported"), "{err}");
    assert!(decode::<Request>("{\"version\":1,\"command\":\"reboot\"}").is_err());
    assert!(decode::<Request>("not json").is_err());
}

/// A server on a fresh socket whose main loop answers every request with
/// `Done`; the socket's path.
fn serve_answering() -> (Server, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "ha-control-test-{}-{}.sock",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let (tx, mut rx) = mpsc::channel::<Call>(4);
    tokio::spawn(async move {
        while let Some((_, reply)) = rx.recv().await {
            let _ = reply.send(Response::Done {
                message: "ok".into(),
            });
        }
    });
    (serve(&path, tx).unwrap(), path)
}

/// Reads what the server sends until it closes the connection (or resets
/// it: it closes with our unread bytes).
async fn until_closed(stream: &mut tokio::net::UnixStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(stream, &mut buffer).await {
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_dropped_after_the_request_timeout() {
    let (_server, path) = serve_answering();
    let mut silent = tokio::net::UnixStream::connect(&path).await.unwrap();
    let closed = tokio::time::timeout(REQUEST_TIMEOUT * 2, until_closed(&mut silent)).await;
    assert_eq!(closed.expect("the server kept a silent client"), "");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn an_endless_request_line_is_refused_at_the_size_limit() {
    let (_server, path) = serve_answering();
    let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let chunk = vec![b'x'; 4096];
    let mut sent = 0u64;
    // Stops when the server closes the connection.
    while tokio::io::AsyncWriteExt::write_all(&mut client, &chunk)
        .await
        .is_ok()
    {
        sent += chunk.len() as u64;
        assert!(
            sent <= 64 * MAX_REQUEST,
            "the server read {sent} bytes of one request"
        );
    }
    let answer = until_closed(&mut client).await;
    assert!(answer.contains("request longer than"), "{answer:?}");
    // And it still serves well-behaved clients.
    let mut good = tokio::net::UnixStream::connect(&path).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut good, encode(&Request::Status).as_bytes())
        .await
        .unwrap();
    assert!(until_closed(&mut good).await.contains("\"done\""));
    let _ = std::fs::remove_file(&path);
}
