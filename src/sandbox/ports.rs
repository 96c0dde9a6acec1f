//! Free ports on a loopback address, found by binding port 0 and letting the kernel choose.
//!
//! The port is released before etcd binds it; another process could take it in between, which on a
//! test machine is rare and shows up as a member that fails to start with "address already in use".

use std::net::{IpAddr, SocketAddr, TcpListener};

use super::SandboxError;

/// Returns a port that is free on `ip` right now. Only loopback addresses are accepted.
pub fn free_port(ip: IpAddr) -> Result<u16, SandboxError> {
    if !ip.is_loopback() {
        return Err(SandboxError::NoPort(format!(
            "{ip} (not a loopback address)"
        )));
    }
    let listener = TcpListener::bind(SocketAddr::new(ip, 0))
        .map_err(|e| SandboxError::NoPort(format!("{ip}: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| SandboxError::NoPort(format!("{ip}: {e}")))
}
