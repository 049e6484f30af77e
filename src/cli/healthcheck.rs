//! `authprobe healthcheck`: whether a running authprobe answers, for container health checks.

use std::time::Duration;

use anyhow::Context as _;

use super::EXIT_FAILED;

/// 0 if authprobe at `address` answers its health endpoint, else [`EXIT_FAILED`] with why.
pub fn command(address: &str) -> u8 {
    match healthcheck(address) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("authprobe at {address} is not healthy: {e}");
            EXIT_FAILED
        }
    }
}

/// `GET /-/healthy` on `address` (`HOST:PORT`, or `:PORT` for this host) in plain HTTP/1.0,
/// within 3 s.
fn healthcheck(address: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let address = if address.starts_with(':') { format!("127.0.0.1{address}") } else { address.to_owned() };
    let timeout = Duration::from_secs(3);
    let target = address.to_socket_addrs()?.next().context("the address resolves to nothing")?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /-/healthy HTTP/1.0\r\nHost: authprobe\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let status = String::from_utf8_lossy(&head[..n]);
    let line = status.lines().next().unwrap_or_default();
    // 401: the server answers, behind the basic authentication of --web.config.file.
    anyhow::ensure!(matches!(line.split_whitespace().nth(1), Some("200" | "401")), "answered {line:?}");
    Ok(())
}
