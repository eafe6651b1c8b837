//! Connecting a Phoenix V2 JSON websocket from a chosen 127.0.0.0/8 source address, joining a
//! topic, and cheap scanning of the frames the load generator cares about.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where to connect, checked to be on the loopback network.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub url: String,
}

/// Resolves `host:port` and refuses anything that is not IPv4 127.0.0.0/8.
pub async fn resolve(host: &str, port: u16, path: &str) -> Result<Target, BoxError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    if addrs.is_empty() {
        return Err(format!("{host}: no address").into());
    }
    // Every resolved address must be loopback v4: the load generator never leaves the host.
    for a in &addrs {
        match a.ip() {
            IpAddr::V4(v4) if v4.octets()[0] == 127 => {}
            other => {
                return Err(format!(
                    "refusing to target {host} ({other}): only 127.0.0.0/8 is allowed"
                )
                .into())
            }
        }
    }
    let addr = addrs[0];
    Ok(Target {
        addr,
        url: format!("ws://{}{}", addr, path),
    })
}

/// The source address for the socket number `i` of shard `shard`: 127.(10+shard).a.b, so that
/// shards never share a source address, and each address carries few sockets (ephemeral ports).
pub fn source_addr(shard: u32, i: u64) -> Ipv4Addr {
    let per = 250u64;
    let b = (i % per) as u8 + 1;
    let a = ((i / per) % 250) as u8;
    Ipv4Addr::new(127, 10 + (shard % 200) as u8, a, b)
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: tens of thousands of sockets in one process.
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(16 * 1024 * 1024)
}

/// TCP connect from `src` (bound before connect, SO_REUSEADDR), then the websocket handshake.
pub async fn connect(target: &Target, src: Ipv4Addr) -> Result<Ws, BoxError> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())?;
    let std_stream: std::net::TcpStream = sock.into();
    let tcp = TcpSocket::from_std_stream(std_stream);
    let stream = tcp.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (ws, resp) =
        tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(ws_config()))
            .await?;
    if resp.status().as_u16() != 101 {
        return Err(format!("handshake status {}", resp.status()).into());
    }
    Ok(ws)
}

/// Sends `phx_join` (join_ref = ref = "1") and waits for its ok reply.
pub async fn join(ws: &mut Ws, topic: &str) -> Result<(), BoxError> {
    let frame = format!(r#"["1","1",{},"phx_join",{{}}]"#, json_str(topic));
    ws.send(Message::text(frame)).await?;
    loop {
        let msg = ws.next().await.ok_or("closed before join reply")??;
        if let Message::Text(t) = msg {
            let t = t.as_str();
            if frame_ref(t) == Some("1") && t.contains(r#""phx_reply""#) {
                if t.contains(r#""status":"ok""#) {
                    return Ok(());
                }
                return Err(format!("join refused: {t}").into());
            }
        }
    }
}

/// Connect + join with an overall bound.
pub async fn connect_join(
    target: &Target,
    src: Ipv4Addr,
    topic: &str,
    timeout: Duration,
) -> Result<Ws, BoxError> {
    tokio::time::timeout(timeout, async {
        let mut ws = connect(target, src).await?;
        join(&mut ws, topic).await?;
        Ok(ws)
    })
    .await
    .map_err(|_| -> BoxError { "connect+join timed out".into() })?
}

/// A JSON string literal for a topic made of safe characters (escapes `"` and `\` anyway).
pub fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The `ref` (second element) of a V2 frame `[join_ref, ref, topic, event, payload]`, if a string.
/// Refs are produced by this load generator (digits), so no escape handling is needed.
pub fn frame_ref(t: &str) -> Option<&str> {
    let rest = t.strip_prefix('[')?;
    // Skip the first element: null or a "..." string.
    let rest = if let Some(r) = rest.strip_prefix("null") {
        r
    } else {
        let r = rest.strip_prefix('"')?;
        &r[r.find('"')? + 1..]
    };
    let rest = rest.strip_prefix(',')?;
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// The unsigned integer after `key` (e.g. `"seq":`) in `t`.
pub fn scan_u64(t: &str, key: &str) -> Option<u64> {
    let start = t.find(key)? + key.len();
    let digits = t[start..].trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME: comparable across processes on one host).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> io::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::increase_nofile_limit(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        assert_eq!(
            frame_ref(r#"["1","7","room:a","phx_reply",{"status":"ok"}]"#),
            Some("7")
        );
        assert_eq!(
            frame_ref(r#"[null,"12","phoenix","phx_reply",{}]"#),
            Some("12")
        );
        assert_eq!(frame_ref(r#"[null,null,"room:a","shout",{}]"#), None);
    }

    #[test]
    fn scans() {
        let t = r#"[null,null,"room:f","shout",{"pad":"xx","seq":3,"t":1700000000123456789}]"#;
        assert_eq!(scan_u64(t, r#""seq":"#), Some(3));
        assert_eq!(scan_u64(t, r#""t":"#), Some(1_700_000_000_123_456_789));
        assert_eq!(scan_u64(t, r#""nope":"#), None);
    }

    #[test]
    fn sources_are_disjoint_per_shard() {
        assert_ne!(source_addr(0, 5), source_addr(1, 5));
        assert_eq!(source_addr(0, 0), Ipv4Addr::new(127, 10, 0, 1));
        assert_eq!(source_addr(0, 250), Ipv4Addr::new(127, 10, 1, 1));
    }

    #[tokio::test]
    async fn refuses_non_loopback() {
        assert!(resolve("10.0.0.1", 80, "/").await.is_err());
        assert!(resolve("127.0.0.1", 80, "/").await.is_ok());
    }
}
