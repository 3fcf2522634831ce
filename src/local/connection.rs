//! One WebSocket connection's life: its messages handled one at a time in order, pushes
//! written in order, API Gateway's limits enforced, and a `$disconnect` however it ends.

use super::events::{self, Body, ConnectionContext};
use super::registry::{Command, Handle};
use super::state::Gateway;
use super::{CLOSE_HANDSHAKE_TIMEOUT, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, MAX_QUEUED_MESSAGES};
use crate::event::WsResponse;
use crate::time::now_ms;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Per-connection read buffer: API Gateway frames are at most 32 KiB, and a small buffer keeps
/// hundreds of idle connections cheap.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// While discarding what a client sends after an oversized frame, this much silence means it
/// is done (the stream can no longer be parsed, so there is no close frame to wait for).
const DRAIN_QUIET: std::time::Duration = std::time::Duration::from_millis(200);

/// How a connection ended, as its `$disconnect` reports it.
struct Ending {
    status: u16,
    reason: String,
    /// The server closes: send this close frame first.
    close_frame: bool,
    /// The stream cannot be parsed any more (oversized frame): discard input, do not read frames.
    desynced: bool,
}

impl Ending {
    fn server(code: CloseCode, reason: &str) -> Ending {
        Ending {
            status: u16::from(code),
            reason: reason.to_owned(),
            close_frame: true,
            desynced: false,
        }
    }

    /// The input can no longer be parsed as frames.
    fn desynced(mut self) -> Ending {
        self.desynced = true;
        self
    }

    fn client(frame: Option<CloseFrame>) -> Ending {
        let (status, reason) = match frame {
            Some(f) => (u16::from(f.code), f.reason.to_string()),
            // API Gateway's wording when the client's close frame has no status.
            None => (1005, "Client-side close frame status not set".to_owned()),
        };
        Ending {
            status,
            reason,
            close_frame: false,
            desynced: false,
        }
    }

    fn abnormal() -> Ending {
        Ending {
            status: 1006,
            reason: "Connection closed abnormally".into(),
            close_frame: false,
            desynced: true,
        }
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<WsResponse, String>> + Send>>;

/// API Gateway's frame and message limits.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .max_message_size(Some(MAX_MESSAGE_BYTES))
}

/// The instant `d` from now; a duration too long to represent never comes (about a century).
fn after(d: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 86_400))
}

/// Runs a MESSAGE through the function.
fn start(gw: &Arc<Gateway>, ctx: &ConnectionContext, body: Body) -> Pending {
    let event = events::message(ctx, &gw.ids, &body, now_ms());
    let gw = gw.clone();
    Box::pin(async move { gw.invoke(event).await })
}

/// Serves an upgraded connection until it ends, then sends its `$disconnect`.
pub async fn serve<S>(
    gw: Arc<Gateway>,
    ctx: ConnectionContext,
    handle: Handle,
    io: S,
    mut commands: mpsc::Receiver<Command>,
    done: mpsc::Sender<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
    let (mut sink, mut stream) = ws.split();
    let shutdown = gw.shutdown_signal();
    let max_age = sleep(gw.max_connection_age);
    let idle = sleep(gw.idle_timeout);
    tokio::pin!(shutdown, max_age, idle);
    let mut queued: VecDeque<Body> = VecDeque::new();
    let mut in_flight: Option<Pending> = None;
    let touch = |idle: Pin<&mut tokio::time::Sleep>| {
        idle.reset(after(gw.idle_timeout));
        handle.info.touch(now_ms());
    };

    let ending = 'conn: loop {
        tokio::select! {
            _ = &mut shutdown => break Ending::server(CloseCode::Away, "Going away"),
            _ = &mut max_age => break Ending::server(CloseCode::Away, "Going away"),
            _ = &mut idle => break Ending::server(CloseCode::Away, "Going away"),
            Some(cmd) = commands.recv() => match cmd {
                Command::Push(m) => {
                    touch(idle.as_mut());
                    if sink.send(m).await.is_err() {
                        break Ending::abnormal();
                    }
                }
                Command::Delete => break Ending::server(CloseCode::Normal, "Connection deleted"),
            },
            res = async { match in_flight.as_mut() { Some(f) => f.await, None => std::future::pending().await } } => {
                in_flight = None;
                // Pushes the invocation made happened before its reply: write them first.
                while let Ok(cmd) = commands.try_recv() {
                    match cmd {
                        Command::Push(m) => {
                            if sink.send(m).await.is_err() {
                                break 'conn Ending::abnormal();
                            }
                        }
                        Command::Delete => break 'conn Ending::server(CloseCode::Normal, "Connection deleted"),
                    }
                }
                let reply = match res {
                    Ok(r) => r.body,
                    // API Gateway's own message when the integration fails.
                    Err(_) => Some(
                        serde_json::json!({
                            "message": "Internal server error",
                            "connectionId": ctx.connection_id,
                            "requestId": gw.ids.aws_id(),
                        })
                        .to_string(),
                    ),
                };
                if let Some(body) = reply {
                    touch(idle.as_mut());
                    if sink.send(Message::text(body)).await.is_err() {
                        break Ending::abnormal();
                    }
                }
                in_flight = queued.pop_front().map(|b| start(&gw, &ctx, b));
            }
            frame = stream.next(), if queued.len() < MAX_QUEUED_MESSAGES => {
                let body = match frame {
                    Some(Ok(Message::Text(t))) => Body::Text(t.to_string()),
                    Some(Ok(Message::Binary(b))) => Body::Binary(b.to_vec()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        touch(idle.as_mut());
                        continue;
                    }
                    Some(Ok(Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(f))) => break Ending::client(f),
                    Some(Err(WsError::Capacity(_))) => {
                        break Ending::server(CloseCode::Size, "Message too big").desynced();
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        break Ending::server(CloseCode::Invalid, "Invalid frame payload data");
                    }
                    Some(Err(WsError::Protocol(_))) => {
                        break Ending::server(CloseCode::Protocol, "Protocol error").desynced();
                    }
                    Some(Err(_)) | None => break Ending::abnormal(),
                };
                touch(idle.as_mut());
                match in_flight {
                    None => in_flight = Some(start(&gw, &ctx, body)),
                    Some(_) => queued.push_back(body),
                }
            }
        }
    };

    // From here on pushes answer 410, as API Gateway's do for a closing connection.
    gw.registry.remove(&ctx.connection_id);
    if let Some(rest) = in_flight.take() {
        // API Gateway does not cancel a running invocation when its client leaves.
        let done = done.clone();
        tokio::spawn(async move {
            let _ = rest.await;
            drop(done);
        });
    }
    if ending.close_frame {
        let frame = CloseFrame {
            code: CloseCode::from(ending.status),
            reason: ending.reason.clone().into(),
        };
        let _ = timeout(
            CLOSE_HANDSHAKE_TIMEOUT,
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
    if ending.desynced {
        if let Ok(mut ws) = sink.reunite(stream) {
            let _ = timeout(CLOSE_HANDSHAKE_TIMEOUT, drain(ws.get_mut())).await;
        }
    } else {
        // Reading to the end flushes our close reply and waits for the client's close frame.
        let _ = timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
    let event = events::disconnect(&ctx, &gw.ids, ending.status, &ending.reason, now_ms());
    let _ = gw.invoke(event).await;
    drop(done);
}

/// Reads and discards input until the client stops sending, so closing the socket does not
/// reset the connection (and destroy the close frame) while unread data is pending.
async fn drain<S: AsyncRead + Unpin>(io: &mut S) {
    let mut buf = [0u8; 8192];
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        let read = std::future::poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, &mut rb));
        match timeout(DRAIN_QUIET, read).await {
            Ok(Ok(())) if !rb.filled().is_empty() => continue,
            _ => return,
        }
    }
}
