//! The live connections by id, and the handle through which the management API and a
//! connection's invocations reach its socket.

use super::OUTBOUND_QUEUE;
use super::events::ConnectionContext;
use super::ids::IdGen;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What the management API (and a connection's own invocations) ask of a connection.
#[derive(Debug)]
pub enum Command {
    /// `POST @connections/{id}`, or an invocation's reply: write this message.
    Push(Message),
    /// `DELETE @connections/{id}`: close the connection.
    Delete,
}

/// What `GET @connections/{id}` describes.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub connected_at_ms: u64,
    pub source_ip: String,
    pub user_agent: String,
    last_active_ms: AtomicU64,
}

impl ConnectionInfo {
    /// When a message last went either way.
    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    /// Records that a message went either way at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.last_active_ms.store(now_ms, Ordering::Relaxed);
    }
}

/// The way to a live connection's socket.
#[derive(Clone, Debug)]
pub struct Handle {
    /// The socket's one FIFO queue: whatever is sent here is written in the order sent.
    pub tx: mpsc::Sender<Command>,
    pub info: Arc<ConnectionInfo>,
}

impl Handle {
    /// A handle and the receiving end its connection task reads commands from.
    pub fn new(ctx: &ConnectionContext, user_agent: String) -> (Handle, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let info = ConnectionInfo {
            connected_at_ms: ctx.connected_at_ms,
            source_ip: ctx.source_ip.clone(),
            user_agent,
            last_active_ms: AtomicU64::new(ctx.connected_at_ms),
        };
        (
            Handle {
                tx,
                info: Arc::new(info),
            },
            rx,
        )
    }
}

/// The live connections, by connection id.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<String, Handle>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection id no live connection has.
    pub fn fresh_id(&self, ids: &IdGen) -> String {
        loop {
            let id = ids.aws_id();
            if !self.lock().contains_key(&id) {
                return id;
            }
        }
    }

    /// Registers a live connection.
    pub fn insert(&self, id: &str, handle: Handle) {
        self.lock().insert(id.to_owned(), handle);
    }

    /// The live connection `id`, if any.
    pub fn get(&self, id: &str) -> Option<Handle> {
        self.lock().get(id).cloned()
    }

    /// Forgets `id`: from now on the management API answers 410 for it.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}
