//! A session on channels in place of a WebSocket, with a fake cluster: what the client
//! sees while the other nodes are slow to answer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender};

use super::*;
use crate::signal::cluster::api::Admission;
use crate::signal::fake::{self, FakeCluster};

/// The client's end of a session: frames to send, frames received.
struct Client {
    to_server: mpsc::Sender<Message>,
    from_server: mpsc::Receiver<Message>,
    task: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
}

/// A session of peer `id` on `hub`, as a task.
fn start(hub: &Arc<Hub>, id: &str) -> Client {
    let (to_server, rx) = mpsc::channel::<Message>(64);
    let (tx, from_server) = mpsc::channel::<Message>(1024);
    let stream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|m| (Ok::<_, ()>(m), rx))
    }));
    let me = Me {
        id: id.to_owned(),
        namespace: String::new(),
        ip: "192.0.2.1".parse().unwrap(),
        only_room: None,
        dialect: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(
        PollSender::new(tx),
        stream,
        Arc::clone(hub),
        me,
        shutdown.clone(),
    ));
    Client {
        to_server,
        from_server,
        task,
        shutdown,
    }
}

impl Client {
    async fn send(&self, text: &str) {
        self.to_server
            .send(Message::Text(text.into()))
            .await
            .unwrap();
    }

    /// The next frame, as `"ping"` or the `type` of a text frame.
    async fn next(&mut self) -> (String, Value) {
        let frame = tokio::time::timeout(Duration::from_secs(600), self.from_server.recv())
            .await
            .expect("a frame within 10 minutes")
            .expect("the session is open");
        match frame {
            Message::Ping(_) => ("ping".to_owned(), Value::Null),
            Message::Text(text) => {
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                (v["type"].as_str().unwrap().to_owned(), v)
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }

    async fn close(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the session ends")
            .unwrap();
    }
}

fn config() -> SignalConfig {
    SignalConfig {
        heartbeat_interval: Duration::from_secs(1),
        ..SignalConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_cluster_stops_neither_the_heartbeat_nor_the_outbox() {
    let fake = Arc::new(FakeCluster::new().slow(Duration::from_secs(30)));
    let hub = fake::hub(config(), Some(Arc::clone(&fake)));
    let mut client = start(&hub, "a");
    let asked = tokio::time::Instant::now();
    client.send(r#"{"type":"join","room":"demo"}"#).await;
    // Sent behind the join: answered after it, as a client's messages keep their order.
    client.send(r#"{"type":"ping"}"#).await;
    while fake.joins.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Something for the joiner from elsewhere while Redis has not answered.
    let notice = r#"{"type":"notice"}"#.to_owned();
    hub.lock().deliver(vec![("a".to_owned(), notice)]);
    let mut seen = Vec::new();
    loop {
        let (kind, _) = client.next().await;
        seen.push(kind.clone());
        if kind == "peers" {
            break;
        }
    }
    assert!(
        asked.elapsed() >= Duration::from_secs(30),
        "the join took its 30 s"
    );
    let pings = seen.iter().filter(|k| *k == "ping").count();
    assert!(pings >= 25, "kept pinging while the join waited: {seen:?}");
    assert!(
        seen.contains(&"notice".to_owned()),
        "the outbox kept going: {seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("peers"));
    let (kind, _) = loop {
        let next = client.next().await;
        if next.0 != "ping" {
            break next;
        }
    };
    assert_eq!(
        kind, "pong",
        "the ping sent behind the join is answered after it"
    );
    client.close().await;
    assert_eq!(
        fake.leaves.lock().unwrap().len(),
        1,
        "the closing leave reached the cluster"
    );
    assert_eq!(hub.counts(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_refusal_from_the_cluster_comes_back_as_an_error_frame() {
    let fake = Arc::new(FakeCluster::new().joining(Ok(Admission::Full(2))));
    let hub = fake::hub(config(), Some(Arc::clone(&fake)));
    let mut client = start(&hub, "a");
    client.send(r#"{"type":"join","room":"demo"}"#).await;
    let error = loop {
        let (kind, v) = client.next().await;
        if kind != "ping" {
            assert_eq!(kind, "error");
            break v;
        }
    };
    assert_eq!(error["code"], "room_full");
    assert_eq!(
        error["message"],
        "room \"demo\" has 2 peers, the most it holds"
    );
    let counted = hub.refusals.error_counts();
    assert!(counted.contains(&("room_full", 1)), "{counted:?}");
    client.close().await;
}
