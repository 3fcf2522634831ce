//! A loopback `@connections` endpoint answering like API Gateway's management API.
#![allow(dead_code)]

use super::http::read_message;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What the endpoint received and what it should answer next.
#[derive(Default)]
pub struct Book {
    /// Delivered messages per connection id, in order.
    pub delivered: HashMap<String, Vec<String>>,
    /// When each delivered message's request was read, per connection id, in order.
    pub arrived: HashMap<String, Vec<std::time::Instant>>,
    /// Every POST per connection id, delivered or not.
    pub attempts: HashMap<String, usize>,
    /// Scripted statuses per connection id; 200 when the script is empty; [`STALL`] never
    /// answers that request.
    pub script: HashMap<String, VecDeque<u16>>,
    /// Connection ids that answer 410 from now on.
    pub gone: std::collections::HashSet<String>,
    /// Connection ids whose POSTs are held unread until [`ConnectionsEndpoint::release`].
    pub held: std::collections::HashSet<String>,
    /// How long every answer waits after its POST was read (API Gateway's own round trip).
    pub answer_after: Option<std::time::Duration>,
    /// When set, every POST's SigV4 signature (`execute-api`) is checked against these
    /// credentials as API Gateway checks it, and each refusal recorded.
    pub verify: Option<aws_credential_types::Credentials>,
    /// The signature refusals of checked POSTs, with the connection id each was for.
    #[cfg(feature = "local")]
    pub refused: Vec<(String, wsexec::local::signature::Refusal)>,
    /// The request target (path) of every checked POST, in order.
    pub paths: Vec<String>,
}

/// A scripted status that makes the endpoint never answer the request (a push timeout).
pub const STALL: u16 = 0;

/// A running endpoint.
#[derive(Clone)]
pub struct ConnectionsEndpoint {
    pub url: String,
    pub book: Arc<Mutex<Book>>,
    released: Arc<tokio::sync::watch::Sender<bool>>,
}

impl ConnectionsEndpoint {
    /// Messages delivered to `id`, parsed.
    pub fn delivered(&self, id: &str) -> Vec<serde_json::Value> {
        let b = self.book.lock().unwrap();
        b.delivered
            .get(id)
            .map(|v| v.iter().map(|m| serde_json::from_str(m).unwrap()).collect())
            .unwrap_or_default()
    }

    /// Messages delivered to `id`, parsed, with when each POST was read (for latency benches).
    pub fn delivered_at(&self, id: &str) -> Vec<(std::time::Instant, serde_json::Value)> {
        let at = self.book.lock().unwrap().arrived.get(id).cloned();
        at.unwrap_or_default()
            .into_iter()
            .zip(self.delivered(id))
            .collect()
    }

    /// POSTs made to `id`.
    pub fn attempts(&self, id: &str) -> usize {
        *self.book.lock().unwrap().attempts.get(id).unwrap_or(&0)
    }

    /// Holds every POST to `id` from now on, unanswered and not delivered, until
    /// [`ConnectionsEndpoint::release`].
    pub fn hold(&self, id: &str) {
        self.book.lock().unwrap().held.insert(id.to_owned());
    }

    /// Lets the held POSTs through (read, delivered and answered as any other), and holds no
    /// more.
    pub fn release(&self) {
        self.book.lock().unwrap().held.clear();
        self.released.send_replace(true);
    }

    /// Answers every POST `after` it was read, as a remote `@connections` would (the POST is
    /// timestamped and delivered when read).
    pub fn answer_after(&self, after: std::time::Duration) {
        self.book.lock().unwrap().answer_after = Some(after);
    }

    /// Checks every POST's signature from now on against `credentials` (see [`Book::verify`]).
    pub fn verify_signatures(&self, credentials: aws_credential_types::Credentials) {
        self.book.lock().unwrap().verify = Some(credentials);
    }

    /// The signature refusals recorded so far: (connection id, why).
    #[cfg(feature = "local")]
    pub fn refused_signatures(&self) -> Vec<(String, wsexec::local::signature::Refusal)> {
        self.book.lock().unwrap().refused.clone()
    }

    /// The request target of every checked POST so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.book.lock().unwrap().paths.clone()
    }

    /// Scripts the next statuses for `id`.
    pub fn script(&self, id: &str, statuses: &[u16]) {
        let mut b = self.book.lock().unwrap();
        b.script
            .insert(id.to_owned(), statuses.iter().copied().collect());
    }
}

fn error_type(status: u16) -> &'static str {
    match status {
        410 => "GoneException",
        403 => "ForbiddenException",
        413 => "PayloadTooLargeException",
        429 => "LimitExceededException",
        _ => "InternalServerErrorException",
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts the endpoint on a loopback port.
pub async fn start() -> ConnectionsEndpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let book = Arc::new(Mutex::new(Book::default()));
    let released = Arc::new(tokio::sync::watch::channel(false).0);
    let (shared, go) = (book.clone(), released.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let book = shared.clone();
            let mut go = go.subscribe();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_message(&mut sock, &mut buf).await {
                    let mut arrived = std::time::Instant::now();
                    let body = String::from_utf8_lossy(req.body()).into_owned();
                    let path = req.path().to_owned();
                    let id = percent_decode(path.rsplit('/').next().unwrap_or(""));
                    let held = book.lock().unwrap().held.contains(&id);
                    if held {
                        if go.wait_for(|go| *go).await.is_err() {
                            return;
                        }
                        // A held POST is read when it is let through.
                        arrived = std::time::Instant::now();
                    }
                    let status = {
                        let mut b = book.lock().unwrap();
                        *b.attempts.entry(id.clone()).or_default() += 1;
                        if b.verify.is_some() {
                            b.paths.push(path.clone());
                        }
                        #[cfg(feature = "local")]
                        if let Some(credentials) = &b.verify {
                            let checked = req.parts().map_or(
                                Err(wsexec::local::signature::Refusal::Unsigned),
                                |parts| {
                                    wsexec::local::signature::verify(
                                        credentials,
                                        "execute-api",
                                        &parts,
                                        req.body(),
                                        std::time::SystemTime::now(),
                                    )
                                },
                            );
                            if let Err(refusal) = checked {
                                b.refused.push((id.clone(), refusal));
                            }
                        }
                        let scripted = b.script.get_mut(&id).and_then(|q| q.pop_front());
                        let status = if b.gone.contains(&id) {
                            410
                        } else {
                            scripted.unwrap_or(200)
                        };
                        if status == 410 {
                            b.gone.insert(id.clone());
                        }
                        if status == 200 {
                            b.arrived.entry(id.clone()).or_default().push(arrived);
                            b.delivered.entry(id).or_default().push(body);
                        }
                        status
                    };
                    let after = book.lock().unwrap().answer_after;
                    if let Some(after) = after {
                        tokio::time::sleep(after).await;
                    }
                    if status == STALL {
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        return;
                    }
                    let resp = if status == 200 {
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned()
                    } else {
                        let msg = format!(r#"{{"message":"{}"}}"#, error_type(status));
                        format!(
                            "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\nx-amzn-ErrorType: {}\r\nContent-Length: {}\r\n\r\n{msg}",
                            error_type(status),
                            msg.len()
                        )
                    };
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    ConnectionsEndpoint {
        url,
        book,
        released,
    }
}
