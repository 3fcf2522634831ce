//! A minimal HTTP/1.1 message reader shared by the loopback endpoints of the tests (Runtime
//! API, `@connections`, DynamoDB faults, the DynamoDB proxy).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 message read off a stream: its raw bytes and its parsed head.
pub struct Message {
    pub raw: Vec<u8>,
    pub head: String,
    body_start: usize,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn body(&self) -> &[u8] {
        &self.raw[self.body_start..]
    }

    /// The request method (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        self.head.split_whitespace().next().unwrap_or("")
    }

    /// The request target (path and query).
    pub fn path(&self) -> &str {
        self.head.split_whitespace().nth(1).unwrap_or("")
    }

    /// A request's method, target and headers as `http` parts (for a signature check).
    pub fn parts(&self) -> Option<hyper::http::request::Parts> {
        let mut builder = hyper::Request::builder()
            .method(self.method())
            .uri(self.path());
        for line in self.head.lines().skip(1) {
            let (k, v) = line.split_once(':')?;
            builder = builder.header(k.trim(), v.trim());
        }
        Some(builder.body(()).ok()?.into_parts().0)
    }

    /// A response's status code.
    pub fn status(&self) -> Option<u16> {
        self.head.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Reads one message (head, then a `Content-Length` or chunked body); `None` at end of stream.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<Message> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = r.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let body_start = end + 4;
    let probe = Message {
        raw: Vec::new(),
        head,
        body_start,
    };
    let chunked = probe
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let total = if chunked {
        loop {
            if let Some(len) = chunked_len(&buf[body_start..]) {
                break body_start + len;
            }
            let n = r.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        }
    } else {
        let len: usize = probe
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < body_start + len {
            let n = r.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        }
        body_start + len
    };
    let raw: Vec<u8> = buf.drain(..total).collect();
    Some(Message { raw, ..probe })
}

/// The length of a complete chunked body at the start of `b`, if it is all there.
fn chunked_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + b[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[at..line_end])
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        at = line_end + 2 + size + 2;
        if b.len() < at {
            return None;
        }
        if size == 0 {
            return Some(at);
        }
    }
}

/// Sends `head` (a request without body) on a fresh TCP connection to `addr` and reads the
/// response; panics if none arrives within `wait`.
pub async fn exchange(addr: SocketAddr, head: &str, wait: Duration) -> Message {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(head.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        read_message(&mut tcp, &mut buf).await.expect("a response")
    };
    tokio::time::timeout(wait, exchange)
        .await
        .expect("a response within the wait")
}
