//! The bounded, fair queue between the listeners and the journal writer.
//!
//! Each sender has its own FIFO; the writer takes messages round-robin
//! across senders, so a device flooding the collector waits behind its own
//! backlog, not in front of everyone else's. The whole queue is bounded in
//! bytes, and a sender holding more than its fair share (the bound divided by
//! the senders with queued messages) is refused until it drains, which keeps
//! room for a quiet sender even while a loud one is being backpressured.
//!
//! Refusal is the caller's to handle: stream listeners wait ([`FairQueue::push`]:
//! they stop reading the socket, so TCP flow control slows the sender), the
//! UDP listener counts a drop ([`FairQueue::try_push`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Transport;
use super::senders::Sender;

/// Bytes a queued message costs beyond its text (its envelope), so that a
/// flood of empty messages is bounded too.
const OVERHEAD: usize = 64;

/// Messages a sender may hand the writer in one turn of the round-robin.
const QUANTUM: usize = 8;

/// One received message on its way to the journal.
#[derive(Debug)]
pub struct Message {
    pub sender: Arc<Sender>,
    pub transport: Transport,
    pub peer: IpAddr,
    pub raw: Vec<u8>,
    pub truncated: bool,
    pub received_ms: i64,
}

impl Message {
    fn cost(&self) -> usize {
        self.raw.len() + OVERHEAD
    }

    /// The key fairness is computed on: the configured name, or the address
    /// of an unknown sender.
    fn fairness_key(&self) -> Key {
        if self.sender.known {
            Key::Name(self.sender.name.clone())
        } else {
            Key::Addr(self.peer)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Name(String),
    Addr(IpAddr),
}

#[derive(Default)]
struct Lane {
    msgs: VecDeque<Message>,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    lanes: HashMap<Key, Lane>,
    /// Senders with queued messages, in service order.
    ring: VecDeque<Key>,
    bytes: usize,
    len: usize,
    /// Senders blocked in [`FairQueue::push`], by how many pushers: they
    /// count as active for the fair share even with an empty lane, or a
    /// flooding sender would take every freed byte before they get a turn.
    waiting: HashMap<Key, usize>,
}

impl Inner {
    fn active_with(&self, key: &Key) -> usize {
        let others_waiting = self
            .waiting
            .keys()
            .filter(|k| !self.lanes.contains_key(*k))
            .count();
        let me = usize::from(!self.lanes.contains_key(key) && !self.waiting.contains_key(key));
        self.lanes.len() + others_waiting + me
    }
}

/// The queue. Cloning the `Arc` shares it.
pub struct FairQueue {
    max_bytes: usize,
    inner: Mutex<Inner>,
    /// Woken when messages were taken (room may have appeared).
    space: Notify,
    /// Woken when a message was added.
    data: Notify,
}

/// Depth of the queue right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    pub messages: usize,
    pub bytes: usize,
}

impl FairQueue {
    pub fn new(max_bytes: usize) -> FairQueue {
        FairQueue {
            max_bytes,
            inner: Mutex::new(Inner::default()),
            space: Notify::new(),
            data: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Adds a message if the queue has room and the sender is within its
    /// share; gives it back otherwise.
    pub fn try_push(&self, msg: Message) -> Result<(), Message> {
        let cost = msg.cost();
        let key = msg.fairness_key();
        {
            let mut g = self.lock();
            if g.bytes + cost > self.max_bytes {
                return Err(msg);
            }
            let own = g.lanes.get(&key).map_or(0, |l| l.bytes);
            let active = g.active_with(&key);
            let share = self.max_bytes / active.max(1);
            if own > 0 && own + cost > share {
                return Err(msg);
            }
            g.bytes += cost;
            g.len += 1;
            let lane = g.lanes.entry(key.clone()).or_default();
            lane.bytes += cost;
            lane.msgs.push_back(msg);
            if lane.msgs.len() == 1 {
                g.ring.push_back(key);
            }
        }
        self.data.notify_one();
        Ok(())
    }

    /// Adds a message, waiting for room. Returns the message if `cancel`
    /// completes first.
    pub async fn push(
        &self,
        mut msg: Message,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<(), Message> {
        tokio::pin!(cancel);
        let key = msg.fairness_key();
        let mut registered = false;
        let result = loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match self.try_push(msg) {
                Ok(()) => break Ok(()),
                Err(m) => msg = m,
            }
            if !registered {
                *self.lock().waiting.entry(key.clone()).or_default() += 1;
                registered = true;
            }
            tokio::select! {
                _ = &mut space => {}
                // A safety net: never rely on a single wake-up.
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                _ = &mut cancel => break Err(msg),
            }
        };
        if registered {
            let mut g = self.lock();
            if let Some(n) = g.waiting.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    g.waiting.remove(&key);
                }
            }
        }
        result
    }

    /// Takes up to `max` messages, round-robin across senders.
    pub fn pop_batch(&self, max: usize) -> Vec<Message> {
        let mut out = Vec::with_capacity(max.min(4096));
        {
            let mut g = self.lock();
            while out.len() < max {
                let Some(key) = g.ring.pop_front() else {
                    break;
                };
                let Some(lane) = g.lanes.get_mut(&key) else {
                    continue;
                };
                let mut freed = 0;
                for _ in 0..QUANTUM.min(max - out.len()) {
                    let Some(m) = lane.msgs.pop_front() else {
                        break;
                    };
                    freed += m.cost();
                    out.push(m);
                }
                lane.bytes -= freed;
                let empty = lane.msgs.is_empty();
                g.bytes -= freed;
                if empty {
                    g.lanes.remove(&key);
                } else {
                    g.ring.push_back(key);
                }
            }
            g.len -= out.len();
        }
        if !out.is_empty() {
            self.space.notify_waiters();
        }
        out
    }

    /// Waits until at least one message is queued.
    pub async fn wait_data(&self) {
        loop {
            let data = self.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            if self.depth().messages > 0 {
                return;
            }
            data.await;
        }
    }

    pub fn depth(&self) -> Depth {
        let g = self.lock();
        Depth {
            messages: g.len,
            bytes: g.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sender(name: &str) -> Arc<Sender> {
        Arc::new(Sender {
            name: name.into(),
            label: name.into(),
            stream: format!("syslog:{name}"),
            source_type: String::new(),
            labels: BTreeMap::new(),
            known: true,
        })
    }

    fn msg(s: &Arc<Sender>, text: &str) -> Message {
        Message {
            sender: s.clone(),
            transport: Transport::Tcp,
            peer: IpAddr::from([127, 0, 0, 1]),
            raw: text.as_bytes().to_vec(),
            truncated: false,
            received_ms: 0,
        }
    }

    #[test]
    fn a_flooding_sender_cannot_take_the_room_of_a_quiet_one() {
        let q = FairQueue::new(10 * (OVERHEAD + 4));
        let loud = sender("loud");
        let quiet = sender("quiet");
        let mut accepted = 0;
        while q.try_push(msg(&loud, "flod")).is_ok() {
            accepted += 1;
        }
        assert_eq!(accepted, 10, "alone, a sender may use the whole queue");
        assert!(
            q.try_push(msg(&quiet, "ping")).is_err(),
            "the queue is full"
        );
        // Room appears: the quiet sender gets it; the loud one, now over its
        // half share, does not.
        let taken = q.pop_batch(3);
        assert_eq!(taken.len(), 3);
        assert!(q.try_push(msg(&quiet, "ping")).is_ok());
        assert!(q.try_push(msg(&loud, "flod")).is_err());
        // The writer serves both in turn.
        let batch = q.pop_batch(100);
        assert_eq!(batch.len(), 8);
        assert!(
            batch
                .iter()
                .take(QUANTUM + 1)
                .any(|m| m.sender.name == "quiet")
        );
        assert_eq!(q.depth(), Depth::default());
    }

    #[tokio::test]
    async fn a_waiting_quiet_sender_gets_freed_room_before_the_flood() {
        let q = Arc::new(FairQueue::new(10 * (OVERHEAD + 4)));
        let loud = sender("loud");
        let quiet = sender("quiet");
        while q.try_push(msg(&loud, "flod")).is_ok() {}
        let q2 = q.clone();
        let quiet2 = quiet.clone();
        let waiter =
            tokio::spawn(
                async move { q2.push(msg(&quiet2, "ping"), std::future::pending()).await },
            );
        while q.lock().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        // Room appears; the flood, though alone in the lanes, is over its share
        // now that the quiet sender waits.
        assert_eq!(q.pop_batch(1).len(), 1);
        assert!(q.try_push(msg(&loud, "flod")).is_err());
        waiter
            .await
            .expect("join")
            .expect("the quiet sender got in");
        assert!(q.lock().waiting.is_empty());
    }

    #[test]
    fn round_robin_interleaves_senders() {
        let q = FairQueue::new(1 << 20);
        let a = sender("a");
        let b = sender("b");
        for i in 0..20 {
            q.try_push(msg(&a, &format!("a{i}"))).expect("room");
        }
        q.try_push(msg(&b, "b0")).expect("room");
        let batch = q.pop_batch(QUANTUM + 1);
        assert_eq!(batch.last().map(|m| m.sender.name.as_str()), Some("b"));
        // Order within a sender is kept.
        let rest: Vec<_> = q.pop_batch(100).into_iter().map(|m| m.raw).collect();
        assert_eq!(rest.first().map(|r| r.as_slice()), Some(&b"a8"[..]));
        assert_eq!(rest.len(), 12);
    }

    #[tokio::test]
    async fn push_waits_for_room_and_can_be_cancelled() {
        let q = Arc::new(FairQueue::new(2 * (OVERHEAD + 1)));
        let s = sender("s");
        q.try_push(msg(&s, "1")).expect("room");
        q.try_push(msg(&s, "2")).expect("room");
        let back = q.push(msg(&s, "3"), async {}).await;
        assert!(back.is_err(), "cancelled while full");
        let q2 = q.clone();
        let s2 = s.clone();
        let waiter =
            tokio::spawn(async move { q2.push(msg(&s2, "3"), std::future::pending()).await });
        tokio::task::yield_now().await;
        assert_eq!(q.pop_batch(1).len(), 1);
        waiter
            .await
            .expect("join")
            .expect("pushed once room appeared");
        assert_eq!(q.depth().messages, 2);
    }
}
