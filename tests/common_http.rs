//! Shared raw-HTTP pieces for the in-process HTTP tests: a parsed response and the parser of a
//! response head, so every test reads statuses and headers the same way.
#![allow(dead_code)]

/// One HTTP/1.1 response as read off the socket.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Header names as sent; look them up with [`Resp::header`] (case-insensitive).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a response head (status line and headers, without the blank line).
pub fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// One `method path` request on a new connection to `addr`, addressed to `host`, with `body`
/// (sent as JSON when non-empty) and `Connection: close`; the whole response read back.
pub async fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &str,
) -> Resp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n{content}\r\n{body}"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let (status, headers) = parse_head(head);
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}
