//! A real MCP server for the tests: the official Python SDK (`mcp` from PyPI, installed by
//! `tools/test` into the tools virtualenv) running `tests/support/mcp_server.py` on a loopback
//! port, with what it received (`/calls`) and wire faults on demand (`/control`).
//! Include with `#[path = "support/mcp.rs"] mod mcp;` next to `#[path = "support/http.rs"] mod http;`.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The header every test configures, and its value (a log scan looks for the value).
pub const API_KEY_HEADER: &str = "X-Api-Key";
/// A credential that must never reach a log line.
pub const API_KEY: &str = "mcp-secret-key-7f3a9c";

/// The Python with `mcp` installed: `WSEXEC_MCP_PYTHON`, else the tools virtualenv
/// (`WSEXEC_TOOLS_DIR`, else the repository's `.tools`).
pub fn python() -> String {
    if let Ok(p) = std::env::var("WSEXEC_MCP_PYTHON") {
        return p;
    }
    let dir = std::env::var("WSEXEC_TOOLS_DIR")
        .unwrap_or_else(|_| format!("{}/.tools", env!("CARGO_MANIFEST_DIR")));
    format!("{dir}/venv/bin/python")
}

/// The running server; killed on drop.
pub struct McpServer {
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl McpServer {
    /// Starts the server on a free loopback port (or `port`) and waits for it to answer.
    pub fn start_on(port: u16) -> McpServer {
        let script = format!("{}/tests/support/mcp_server.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(python())
            .args([script.as_str(), "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the MCP server with {}: {e}", python()));
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the MCP server printed no port (is `mcp` installed for {}?)",
                python()
            )
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "MCP server never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        McpServer {
            addr,
            child: Some(child),
        }
    }

    /// Starts the server on a free port.
    pub fn start() -> McpServer {
        McpServer::start_on(0)
    }

    /// Its Streamable HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// An `MCP_SERVERS` entry for this server named `name`, with the test credential.
    pub fn entry(&self, name: &str, extra: Value) -> Value {
        let mut e = json!({"name": name, "url": self.url(), "headers": {API_KEY_HEADER: API_KEY}});
        if let (Some(e), Value::Object(extra)) = (e.as_object_mut(), extra) {
            e.extend(extra);
        }
        e
    }

    /// Stops the server (the port then refuses connections).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every request the server received: `{http, headers, method?, tool?, arguments?}`.
    pub async fn calls(&self) -> Vec<Value> {
        let body = request(self.addr, "GET", "/calls", "").await;
        serde_json::from_str(&body).unwrap()
    }

    /// The `tools/call` requests received.
    pub async fn tool_calls(&self) -> Vec<Value> {
        self.calls()
            .await
            .into_iter()
            .filter(|c| c["method"] == "tools/call")
            .collect()
    }

    /// The next `count` `tools/call` requests get `fault` (`500`, `garbage`, `expire`).
    pub async fn fault(&self, fault: &str, count: u32) {
        let body = json!({"fault": fault, "count": count}).to_string();
        request(self.addr, "POST", "/control", &body).await;
    }
}

/// One plain HTTP/1.1 request; the response body.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// `MCP_SERVERS` for these entries.
pub fn servers(entries: &[Value]) -> String {
    Value::Array(entries.to_vec()).to_string()
}
