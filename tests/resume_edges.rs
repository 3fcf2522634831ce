//! `resume` at the edges: an `after_seq` beyond the run's, and a follower so slow to take its
//! catch-up that replaying it inside the run would stall everyone else.

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::streamer::Streamer;
use support::*;
use wsexec::manager::Manager;
use wsexec::notify::memory::MemoryNotifier;
use wsexec::notify::{Notifier, PushError, PushTarget};

/// Records when each push happened, and makes pushes to the `slow` connection take `delay`.
struct SlowFor {
    inner: Arc<MemoryNotifier>,
    slow: Mutex<Option<String>>,
    delay: Duration,
    at: Mutex<HashMap<String, Vec<Instant>>>,
}

#[async_trait::async_trait]
impl Notifier for SlowFor {
    async fn push(&self, target: PushTarget<'_>, message: &str) -> Result<(), PushError> {
        let slow = self.slow.lock().unwrap().as_deref() == Some(target.connection_id);
        if slow {
            tokio::time::sleep(self.delay).await;
        }
        let id = target.connection_id.to_owned();
        self.at
            .lock()
            .unwrap()
            .entry(id)
            .or_default()
            .push(Instant::now());
        self.inner.push(target, message).await
    }
}

const USER: &str = "alice-01";

/// A harness streaming `pieces` words 30 ms apart, heartbeats every 50 ms, pushes to the slow
/// connection taking `delay`.
fn harness(pieces: usize, delay: Duration) -> (Arc<Harness>, Arc<SlowFor>) {
    let mut c = test_config();
    c.heartbeat_deadline = Duration::from_millis(150);
    c.run_time_limit = Some(Duration::from_secs(20));
    c.stream_flush = Duration::from_millis(20);
    let store = Arc::new(wsexec::store::memory::MemoryStore::new());
    let notifier = Arc::new(MemoryNotifier::new());
    let slow = Arc::new(SlowFor {
        inner: notifier.clone(),
        slow: Mutex::new(None),
        delay,
        at: Mutex::default(),
    });
    let agent = Arc::new(Streamer {
        pieces,
        gap: Duration::from_millis(30),
    });
    let mgr = Manager::new(c, store, slow.clone()).with_agent("stream", agent);
    (Arc::new(Harness { mgr, notifier }), slow)
}

/// Starts a run on a new connection; waits until it was pushed `n` frames. The connection,
/// the run id and the task driving the run.
async fn start(h: &Arc<Harness>, n: usize) -> (String, String, tokio::task::JoinHandle<()>) {
    let conn = h.connect(USER).await;
    let frame = json!({"type": "start_agent", "agent": "stream", "request_id": "r1",
                       "payload": {"user_request": "go"}});
    let task = {
        let (h, conn) = (h.clone(), conn.clone());
        tokio::spawn(async move {
            h.send_json(&conn, frame).await;
        })
    };
    for _ in 0..500 {
        if h.pushed(&conn).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (conn, wsexec::run::derive_run_id(USER, "r1"), task)
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect()
}

/// A `resume` with an `after_seq` beyond the run's own is taken as the run's latest `seq`: the
/// follower hears every later event and the end (issue 21, item 6).
#[tokio::test]
async fn an_after_seq_beyond_the_run_still_hears_the_rest_and_the_end() {
    let (h, _) = harness(30, Duration::ZERO);
    let (conn, run_id, task) = start(&h, 5).await;
    let follower = h.connect(USER).await;
    let reply = h
        .send_json(
            &follower,
            json!({"type": "resume", "run_id": run_id, "after_seq": 100_000}),
        )
        .await
        .unwrap();
    assert_eq!(reply["type"], "execution", "{reply}");
    task.await.unwrap();
    let got = h.pushed(&follower);
    assert!(!got.is_empty(), "the follower heard nothing");
    assert_eq!(got.last().unwrap()["type"], "agent_completed");
    let all = seqs(&h.pushed(&conn));
    let tail = seqs(&got);
    assert_eq!(
        tail,
        all[all.len() - tail.len()..],
        "the rest, each once, in order"
    );
}

/// A follower whose every push is slow catches up alongside the run: the starting connection
/// keeps getting its pushes at the run's pace meanwhile, and the follower gets every `seq`
/// once, in order, through the end (issue 21, item 7).
#[tokio::test]
async fn a_slow_catch_up_does_not_stall_the_run_or_other_connections() {
    let (h, slow) = harness(50, Duration::from_millis(60));
    let (conn, run_id, task) = start(&h, 25).await;
    let follower = h.connect(USER).await;
    *slow.slow.lock().unwrap() = Some(follower.clone());
    let resumed = Instant::now();
    h.send_json(
        &follower,
        json!({"type": "resume", "run_id": run_id, "after_seq": 0}),
    )
    .await
    .unwrap();
    task.await.unwrap();
    let got = h.pushed(&follower);
    let all = seqs(&h.pushed(&conn));
    assert_eq!(seqs(&got), all, "every seq once, in order, through the end");
    // Before, the catch-up (25 frames at 60 ms) ran inside the driver's loop: the starting
    // connection heard nothing for 1.5 s.
    let at = slow.at.lock().unwrap()[&conn].clone();
    let gaps = at
        .windows(2)
        .filter(|w| w[1] > resumed)
        .map(|w| w[1] - w[0]);
    let widest = gaps.max().unwrap();
    assert!(widest < Duration::from_millis(700), "a {widest:?} silence");
}
