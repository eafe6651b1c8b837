//! Binding the listening socket with a backlog sized for connection bursts.
//!
//! `TcpListener::bind` asks the kernel for a backlog of 128. A reconnect wave (a deploy, a
//! network blip, a load test) brings hundreds of SYNs at once; past the backlog they are
//! dropped and each of those clients waits a one-second SYN retransmit. The kernel caps the
//! value at `net.core.somaxconn` anyway, so asking for more costs nothing.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept backlog requested from the kernel.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` (SO_REUSEADDR, so a restart does not wait for TIME_WAIT) and listens with
/// [`BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
