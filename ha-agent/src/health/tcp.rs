//! The tcp check: a backend is healthy while it accepts a connection.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::describe;

pub(super) async fn connect(address: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {}", describe(&e)))
}

pub(super) async fn check(address: SocketAddr) -> Result<(), String> {
    drop(connect(address).await?);
    Ok(())
}
