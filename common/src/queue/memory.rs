//! In-process queue for the embedded mode: FIFO per zone, leases that lapse back
//! onto the queue, a delivery limit and a dead-letter list with reasons.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{DeadLetter, Delivery, JobQueue, Nack, QueueAdmin, QueueError, Topology};

struct Msg {
    zone: String,
    payload: Vec<u8>,
    deliveries: u32,
}

#[derive(Default)]
struct State {
    ready: HashMap<String, VecDeque<Msg>>,
    leased: HashMap<String, (Msg, Instant)>,
    dead: Vec<DeadLetter>,
    next_id: u64,
}

/// The embedded queue. Cheap to share behind an `Arc`.
pub struct MemoryQueue {
    state: Mutex<State>,
    notify: Notify,
    lease: Duration,
    max_deliveries: u32,
}

impl MemoryQueue {
    /// `lease`: how long a receiver holds a message without extending it;
    /// `max_deliveries`: after this many deliveries a retried message is
    /// dead-lettered (this queue's [`Topology::delivery_limit`], fixed for its life).
    pub fn new(lease: Duration, max_deliveries: u32) -> Self {
        MemoryQueue {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            lease,
            max_deliveries,
        }
    }

    /// Messages that were dead-lettered, with their reasons.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead.clone()
    }

    /// Messages waiting or leased.
    pub fn pending(&self) -> usize {
        let s = self.lock();
        s.ready.values().map(VecDeque::len).sum::<usize>() + s.leased.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Put lapsed leases back at the front of their queues.
    fn reclaim(state: &mut State, now: Instant) {
        let lapsed: Vec<String> = state
            .leased
            .iter()
            .filter(|(_, (_, t))| *t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in lapsed {
            if let Some((msg, _)) = state.leased.remove(&k) {
                state
                    .ready
                    .entry(msg.zone.clone())
                    .or_default()
                    .push_front(msg);
            }
        }
    }

    fn take(&self, zone: &str) -> Option<Delivery> {
        let mut s = self.lock();
        let now = Instant::now();
        Self::reclaim(&mut s, now);
        let mut msg = s.ready.get_mut(zone)?.pop_front()?;
        msg.deliveries += 1;
        s.next_id += 1;
        let handle = s.next_id.to_string();
        let d = Delivery {
            handle: handle.clone(),
            zone: msg.zone.clone(),
            payload: msg.payload.clone(),
            deliveries: msg.deliveries,
            delivery_limit: Some(self.max_deliveries),
        };
        s.leased.insert(handle, (msg, now + self.lease));
        Some(d)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn publish(&self, zone: &str, payload: &[u8]) -> Result<(), QueueError> {
        self.lock()
            .ready
            .entry(zone.to_string())
            .or_default()
            .push_back(Msg {
                zone: zone.to_string(),
                payload: payload.to_vec(),
                deliveries: 0,
            });
        self.notify.notify_waiters();
        Ok(())
    }

    async fn receive(&self, zone: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            if let Some(d) = self.take(zone) {
                return Ok(Some(d));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Wake on publish/nack, or periodically to reclaim lapsed leases.
            let nap = (deadline - now).min(self.lease.max(Duration::from_millis(10)));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        match self.lock().leased.remove(&delivery.handle) {
            Some(_) => Ok(()),
            None => Err(QueueError::Permanent(format!(
                "ack of unknown or lapsed delivery {}",
                delivery.handle
            ))),
        }
    }

    async fn nack(&self, delivery: &Delivery, what: Nack) -> Result<(), QueueError> {
        let mut s = self.lock();
        let Some((msg, _)) = s.leased.remove(&delivery.handle) else {
            return Err(QueueError::Permanent(format!(
                "nack of unknown or lapsed delivery {}",
                delivery.handle
            )));
        };
        let reason = match what {
            Nack::DeadLetter { reason } => Some(reason),
            Nack::Retry if msg.deliveries >= self.max_deliveries => {
                Some(format!("delivery limit of {} reached", self.max_deliveries))
            }
            Nack::Retry => None,
        };
        match reason {
            Some(reason) => s.dead.push(DeadLetter {
                zone: msg.zone,
                payload: msg.payload,
                reason,
            }),
            None => s.ready.entry(msg.zone.clone()).or_default().push_back(msg),
        }
        drop(s);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn extend_lease(&self, delivery: &Delivery, by: Duration) -> Result<(), QueueError> {
        match self.lock().leased.get_mut(&delivery.handle) {
            Some((_, until)) => {
                *until = Instant::now() + by;
                Ok(())
            }
            None => Err(QueueError::Permanent(format!(
                "lease of delivery {} already lapsed",
                delivery.handle
            ))),
        }
    }
}

/// The memory queue's zones exist as soon as they are named; its delivery limit is
/// the one it was made with, so `init` only checks that the topology agrees.
#[async_trait]
impl QueueAdmin for MemoryQueue {
    async fn init(&self, _zones: &[String], topology: &Topology) -> Result<(), QueueError> {
        topology.validate()?;
        if topology.delivery_limit != self.max_deliveries {
            return Err(QueueError::Permanent(format!(
                "the in-process queue has a delivery limit of {}, not {}",
                self.max_deliveries, topology.delivery_limit
            )));
        }
        Ok(())
    }

    async fn zone_exists(&self, _zone: &str) -> Result<bool, QueueError> {
        Ok(true)
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut s = self.lock();
        let n = max.min(s.dead.len());
        Ok(s.dead.drain(..n).collect())
    }

    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self.lock().dead.iter().take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lease_retry_deadletter_cycle() {
        let q = MemoryQueue::new(Duration::from_secs(30), 2);
        q.publish("z", b"a").await.unwrap();
        assert_eq!(
            q.receive("other", Duration::from_millis(5)).await.unwrap(),
            None
        );

        let d1 = q
            .receive("z", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((d1.payload.as_slice(), d1.deliveries), (&b"a"[..], 1));
        assert_eq!(d1.delivery_limit, Some(2));
        assert!(!d1.last_attempt());
        q.nack(&d1, Nack::Retry).await.unwrap();
        let d2 = q
            .receive("z", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d2.deliveries, 2);
        assert!(d2.last_attempt());
        q.nack(&d2, Nack::Retry).await.unwrap();
        assert_eq!(q.pending(), 0);
        assert_eq!(q.dead_letters()[0].reason, "delivery limit of 2 reached");

        q.publish("z", b"b").await.unwrap();
        let d = q
            .receive("z", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        q.nack(
            &d,
            Nack::DeadLetter {
                reason: "bad signature".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(q.dead_letters()[1].reason, "bad signature");
        assert!(q.ack(&d).await.is_err());

        let peeked = q.peek_dead_letters(10).await.unwrap();
        assert_eq!(peeked.len(), 2, "a peek sees both");
        assert_eq!(
            q.peek_dead_letters(10).await.unwrap(),
            peeked,
            "and takes none"
        );
        let first = q.take_dead_letters(1).await.unwrap();
        assert_eq!(first[0].reason, "delivery limit of 2 reached");
        let rest = q.take_dead_letters(10).await.unwrap();
        assert_eq!(rest.len(), 1, "taken dead letters are gone");
        assert!(q.dead_letters().is_empty());
    }

    #[tokio::test]
    async fn init_accepts_only_its_own_delivery_limit() {
        let q = MemoryQueue::new(Duration::from_secs(30), 2);
        let zones = ["z".to_string()];
        q.init(&zones, &Topology::with_delivery_limit(2))
            .await
            .unwrap();
        let err = q
            .init(&zones, &Topology::with_delivery_limit(5))
            .await
            .unwrap_err();
        assert!(
            !err.is_transient() && err.to_string().contains("not 5"),
            "{err}"
        );
        assert!(q.zone_exists("z").await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn lapsed_lease_is_redelivered_and_extension_prevents_it() {
        let q = MemoryQueue::new(Duration::from_secs(30), 5);
        q.publish("z", b"a").await.unwrap();
        q.publish("z", b"b").await.unwrap();
        let a = q.receive("z", Duration::ZERO).await.unwrap().unwrap();
        let b = q.receive("z", Duration::ZERO).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(20)).await;
        q.extend_lease(&b, Duration::from_secs(60)).await.unwrap();
        tokio::time::advance(Duration::from_secs(20)).await;
        let again = q
            .receive("z", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.payload.clone(), again.deliveries),
            (a.payload.clone(), 2)
        );
        assert!(q.ack(&a).await.is_err(), "a lapsed lease cannot be acked");
        q.ack(&b).await.unwrap();
        q.ack(&again).await.unwrap();
        assert_eq!(q.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn receive_wakes_on_publish() {
        let q = std::sync::Arc::new(MemoryQueue::new(Duration::from_secs(30), 5));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.receive("z", Duration::from_secs(10)).await });
        tokio::time::advance(Duration::from_secs(1)).await;
        q.publish("z", b"x").await.unwrap();
        let got = waiter.await.unwrap().unwrap().unwrap();
        assert_eq!(got.payload, b"x");
    }
}
