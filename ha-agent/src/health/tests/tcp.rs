use super::*;

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
