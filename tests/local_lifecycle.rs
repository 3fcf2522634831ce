//! How the local gateway ends connections: API Gateway's message, frame, idle and age limits,
//! and a graceful shutdown, each with its close code and `$disconnect`.
#![cfg(feature = "local")]

#[path = "support/local_harness.rs"]
mod local_harness;

use futures_util::{SinkExt, StreamExt};
use local_harness::{Gateway, Ws, dev_config, recv_close, send_json};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use wsexec::store::Store;

/// A message over 128 KiB, or a frame over 32 KiB, closes the connection with 1009.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_frames_close_with_1009() {
    let mut gw = Gateway::dev().await;

    let (mut ws, conn_id) = gw.connect_user("alice-01").await;
    ws.send(Message::text("x".repeat(40 * 1024))).await.unwrap();
    assert_eq!(
        recv_close(&mut ws).await.expect("close frame").code,
        CloseCode::Size
    );
    let d = gw.next_invocation("DISCONNECT", Some(&conn_id)).await;
    assert_eq!(d.event["requestContext"]["disconnectStatusCode"], 1009);

    // 5 frames of 30 KiB: each frame is allowed, the 150 KiB message is not.
    let (mut ws, conn_id) = gw.connect_user("alice-01").await;
    let chunk = vec![b'y'; 30 * 1024];
    ws.send(Message::Frame(Frame::message(
        chunk.clone(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    for i in 1..5 {
        let frame = Frame::message(chunk.clone(), OpCode::Data(Data::Continue), i == 4);
        if ws.send(Message::Frame(frame)).await.is_err() {
            break;
        }
    }
    assert_eq!(
        recv_close(&mut ws).await.expect("close frame").code,
        CloseCode::Size
    );
    let d = gw.next_invocation("DISCONNECT", Some(&conn_id)).await;
    assert_eq!(d.event["requestContext"]["disconnectStatusCode"], 1009);

    // A message just under the limits still reaches the function (and gets its error reply).
    let (mut ws, _) = gw.connect_user("alice-01").await;
    ws.send(Message::text("z".repeat(30 * 1024))).await.unwrap();
    assert_eq!(recv_json_or_error(&mut ws).await, "error");
    gw.stop().await;
}

/// The reply's `type` to a non-JSON message.
async fn recv_json_or_error(ws: &mut Ws) -> String {
    match tokio::time::timeout(local_harness::WAIT, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t).unwrap()["type"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// An idle connection is closed with 1001 after the idle timeout, and DISCONNECT fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_with_1001() {
    let mut gw = Gateway::start(dev_config(), |o| o.idle_timeout = Duration::from_secs(1)).await;
    let (mut ws, conn_id) = gw.connect_user("alice-01").await;
    let started = std::time::Instant::now();
    let close = recv_close(&mut ws).await.expect("close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "Going away");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let d = gw.next_invocation("DISCONNECT", Some(&conn_id)).await;
    assert_eq!(d.event["requestContext"]["disconnectStatusCode"], 1001);
    gw.stop().await;
}

/// A busy connection is still closed with 1001 at the maximum connection age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_close_with_1001_at_max_age() {
    let mut gw = Gateway::start(dev_config(), |o| {
        o.max_connection_age = Duration::from_secs(1)
    })
    .await;
    let (mut ws, conn_id) = gw.connect_user("alice-01").await;
    let mut closed = None;
    for _ in 0..100 {
        send_json(&mut ws, json!({ "type": "ping" })).await;
        match tokio::time::timeout(local_harness::WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => {}
            Ok(Some(Ok(Message::Close(f)))) => {
                closed = f;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(closed.expect("closed at max age").code, CloseCode::Away);
    let d = gw.next_invocation("DISCONNECT", Some(&conn_id)).await;
    assert_eq!(d.event["requestContext"]["disconnectStatusCode"], 1001);
    gw.stop().await;
}

/// Shutdown closes every socket with 1001 and sends a DISCONNECT for each before `run` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_socket_with_a_disconnect() {
    let mut gw = Gateway::dev().await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(gw.connect_user(&format!("user-{i}")).await);
    }
    gw.begin_stop();
    for (ws, _) in clients.iter_mut() {
        assert_eq!(
            recv_close(ws).await.expect("close frame").code,
            CloseCode::Away
        );
    }
    let mut disconnected = BTreeSet::new();
    for _ in 0..3 {
        disconnected.insert(
            gw.next_invocation("DISCONNECT", None)
                .await
                .connection_id()
                .to_owned(),
        );
    }
    let opened: BTreeSet<String> = clients.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(disconnected, opened);
    gw.stopped().await;
    for id in &opened {
        assert!(gw.store.get_connection(id).await.unwrap().is_none());
    }
}
