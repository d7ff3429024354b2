//! For unit tests: a fake cluster in place of the Redis link ([`Calls`]) that answers as
//! told, optionally after a delay, and records what it was asked; and a hub to use it with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::json;

use super::cluster::api::{Admission, Boxed, Calls, Failure, Gate};
use super::cluster::wire::Envelope;
use super::hub::Hub;
use super::rooms::RoomKey;
use crate::config::SignalConfig;
use crate::outbox;

/// One join the fake was asked for: room, old room, peer, room-wide limit.
pub(crate) type JoinCall = (RoomKey, Option<RoomKey>, String, usize);

/// A cluster that answers every call with what the test put in.
pub(crate) struct FakeCluster {
    gate: tokio::sync::RwLock<()>,
    /// How long each call takes (tokio time: pause it in the test).
    pub(crate) delay: Duration,
    pub(crate) join_answer: Mutex<Result<Admission, Failure>>,
    pub(crate) relay_answer: Mutex<Result<bool, Failure>>,
    pub(crate) joins: Mutex<Vec<JoinCall>>,
    pub(crate) leaves: Mutex<Vec<(RoomKey, String)>>,
    pub(crate) relays: Mutex<Vec<(String, Envelope)>>,
}

impl FakeCluster {
    /// Admits every join with no remote members, relays to a listening node, at once.
    pub(crate) fn new() -> Self {
        Self {
            gate: tokio::sync::RwLock::new(()),
            delay: Duration::ZERO,
            join_answer: Mutex::new(Ok(Admission::Admitted(Vec::new()))),
            relay_answer: Mutex::new(Ok(true)),
            joins: Mutex::default(),
            leaves: Mutex::default(),
            relays: Mutex::default(),
        }
    }

    /// Answers joins with `answer`.
    pub(crate) fn joining(self, answer: Result<Admission, Failure>) -> Self {
        *self.join_answer.lock().unwrap() = answer;
        self
    }

    /// Takes `delay` over each call.
    pub(crate) fn slow(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Holds the write side of the membership gate, as the link's sync does.
    pub(crate) async fn snapshot(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    async fn wait(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

impl Calls for FakeCluster {
    fn membership_change(&self) -> Boxed<'_, Gate<'_>> {
        Box::pin(self.gate.read())
    }

    fn join<'a>(
        &'a self,
        key: &'a RoomKey,
        old: Option<&'a RoomKey>,
        peer: &'a str,
        max: usize,
    ) -> Boxed<'a, Result<Admission, Failure>> {
        Box::pin(async move {
            let call = (key.clone(), old.cloned(), peer.to_owned(), max);
            self.joins.lock().unwrap().push(call);
            self.wait().await;
            self.join_answer.lock().unwrap().clone()
        })
    }

    fn leave<'a>(&'a self, key: &'a RoomKey, peer: &'a str) -> Boxed<'a, Result<(), Failure>> {
        Box::pin(async move {
            self.leaves
                .lock()
                .unwrap()
                .push((key.clone(), peer.to_owned()));
            self.wait().await;
            Ok(())
        })
    }

    fn relay<'a>(
        &'a self,
        node: &'a str,
        envelope: &'a Envelope,
    ) -> Boxed<'a, Result<bool, Failure>> {
        Box::pin(async move {
            let call = (node.to_owned(), envelope.clone());
            self.relays.lock().unwrap().push(call);
            self.wait().await;
            *self.relay_answer.lock().unwrap()
        })
    }
}

/// A hub with `config` and an empty `iceServers` list, calling `cluster` when given.
pub(crate) fn hub(config: SignalConfig, cluster: Option<Arc<FakeCluster>>) -> Arc<Hub> {
    let hub = Arc::new(Hub::new(config, Box::new(|_: &str| json!([]))));
    if let Some(cluster) = cluster {
        hub.set_calls(cluster);
    }
    hub
}

/// Peer `id` connected to `hub` in namespace `ns`; its outbox.
pub(crate) fn connect(hub: &Hub, id: &str, ns: &str) -> outbox::Receiver<String> {
    let (queue, outbox) = outbox::channel(1 << 20);
    hub.lock().connect(id, ns, queue);
    outbox
}

/// What is in `outbox` now, as JSON.
pub(crate) fn drain(outbox: &mut outbox::Receiver<String>) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Some(Some(text)) = outbox.recv().now_or_never() {
        out.push(serde_json::from_str(&text).unwrap());
    }
    out
}
