//! One WebSocket connection's life: each message its own concurrent invocation, replies and
//! pushes written in the order produced, API Gateway's limits, and a `$disconnect` at the end.

use super::events::{self, Body, ConnectionContext};
use super::registry::{Command, Handle};
use super::state::Gateway;
use super::{CLOSE_HANDSHAKE_TIMEOUT, MAX_FRAME_BYTES, MAX_IN_FLIGHT_MESSAGES, MAX_MESSAGE_BYTES};
use crate::time::now_ms;
use futures_util::{SinkExt, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
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

/// Runs one MESSAGE through the function, then queues its reply on the socket's FIFO queue.
/// Every push the invocation made is already queued (its `@connections` POST returned), so
/// the reply follows them; `_slot` frees the connection's in-flight slot when this returns.
async fn invoke_message(
    gw: Arc<Gateway>,
    ctx: Arc<ConnectionContext>,
    body: Body,
    socket: mpsc::Sender<Command>,
    _slot: OwnedSemaphorePermit,
    _done: mpsc::Sender<()>,
) {
    let event = events::message(&ctx, &gw.ids, &body, now_ms());
    let reply = match gw.invoke(event).await {
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
    if let Some(reply) = reply.and_then(deliverable) {
        // A closed socket drops its queue: the reply has nowhere to go, as on API Gateway.
        let _ = socket.send(Command::Push(Message::text(reply))).await;
    }
}

/// A route response API Gateway can deliver: at most [`MAX_MESSAGE_BYTES`] (its UTF-8
/// bytes). AWS documents no error frame for a larger one, and it cannot reach the client: the
/// emulator drops it and logs why, so a client (and a test) sees the silence it would see on
/// AWS. Pushes are held to the same limit by the `@connections` endpoint (413).
fn deliverable(reply: String) -> Option<String> {
    if reply.len() <= MAX_MESSAGE_BYTES {
        return Some(reply);
    }
    tracing::error!(
        bytes = reply.len(),
        limit = MAX_MESSAGE_BYTES,
        "route response exceeds API Gateway's message limit: not delivered"
    );
    None
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
    let ctx = Arc::new(ctx);
    // Each message is its own invocation, as on API Gateway; a slot bounds how many run at
    // once, and without a free slot the socket is not read (TCP back-pressure).
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT_MESSAGES));
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let touch = |idle: Pin<&mut tokio::time::Sleep>| {
        idle.reset(after(gw.idle_timeout));
        handle.info.touch(now_ms());
    };

    let ending = loop {
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
            free = slots.clone().acquire_owned(), if slot.is_none() => match free {
                Ok(free) => slot = Some(free),
                Err(_) => break Ending::abnormal(),
            },
            frame = stream.next(), if slot.is_some() => {
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
                if let Some(free) = slot.take() {
                    let (gw, ctx, socket) = (gw.clone(), ctx.clone(), handle.tx.clone());
                    tokio::spawn(invoke_message(gw, ctx, body, socket, free, done.clone()));
                }
            }
        }
    };

    // From here on pushes answer 410, as API Gateway's do for a closing connection.
    gw.registry.remove(&ctx.connection_id);
    // Invocations still running go on (API Gateway does not cancel them when the client
    // leaves); each holds a `done` clone, so shutdown waits for them too.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A route response over API Gateway's limit is not delivered; one at the limit is.
    #[test]
    fn oversized_route_responses_are_not_delivered() {
        let at = "x".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(deliverable(at.clone()), Some(at));
        assert_eq!(deliverable("é".repeat(MAX_MESSAGE_BYTES / 2 + 1)), None);
    }
}
