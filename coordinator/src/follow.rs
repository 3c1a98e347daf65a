//! The follow step, one for every mode: read the scan's progress from the store
//! until every shard has an outcome ([`Progress::finished`], the one completion
//! rule), the deadline passes or the user interrupts, showing it on the progress
//! bar and in the `/metrics` gauges as it goes. In a fleet it also looks at the
//! dead-letter queue ([`crate::reconcile`]) so that a shard the broker gave up on
//! ends the scan too. A store outage is waited out and said once, with its end; a
//! permanent store error ends the follow.

use std::time::Duration;

use tokio::time::Instant;

use scanfleet_common::Progress;
use scanfleet_common::store::{ResultStore, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics::ScanMetrics;
use crate::progress::Bar;
use crate::reconcile::DeadLetters;

/// How often a fleet follow looks at the dead-letter queue.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(3);

/// How a follow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// Every shard has an outcome.
    Finished(Progress),
    /// The user interrupted; the last progress read, if any.
    Interrupted(Option<Progress>),
    /// The deadline passed with shards unfinished; the last progress read, if any.
    DeadlineReached(Option<Progress>),
}

/// Why following failed.
#[derive(Debug, thiserror::Error)]
#[error("reading the progress of scan {scan_id}")]
pub struct FollowError {
    pub scan_id: String,
    #[source]
    pub source: StoreError,
}

/// What a follow shows as it goes.
pub struct Watchers<'a> {
    pub bar: &'a Bar,
    pub metrics: Option<&'a ScanMetrics>,
}

/// How a follow goes about it.
pub struct Rules<'a> {
    /// How often progress is read.
    pub poll: Duration,
    /// Stop with [`Followed::DeadlineReached`] after this long.
    pub deadline: Option<Duration>,
    /// Where to look for shards the broker or a worker dead-lettered.
    pub dead_letters: Option<DeadLetters<'a>>,
}

/// Follow a scan to its end.
///
/// # Errors
/// [`FollowError`] for a permanent store error (an unknown scan included).
pub async fn follow(
    store: &dyn ResultStore,
    scan_id: &str,
    show: Watchers<'_>,
    rules: Rules<'_>,
    shutdown: &CancellationToken,
) -> Result<Followed, FollowError> {
    let started = Instant::now();
    let mut last = None;
    let mut outage: Option<StoreError> = None;
    let mut next_look = started + RECONCILE_EVERY;
    let mut dlq_trouble = false;
    loop {
        match store.progress(scan_id).await {
            Ok(p) => {
                if outage.take().is_some() {
                    eprintln!("scanfleet: the result store is back; following scan {scan_id}");
                }
                if let Some(m) = show.metrics {
                    m.set(&p);
                }
                show.bar.update(&p);
                if p.finished() {
                    return Ok(Followed::Finished(p));
                }
                last = Some(p);
            }
            Err(e) if e.is_transient() => {
                if outage.is_none() {
                    eprintln!("scanfleet: the result store is unavailable ({e}); still waiting");
                }
                outage = Some(e);
            }
            Err(source) => {
                return Err(FollowError {
                    scan_id: scan_id.to_string(),
                    source,
                });
            }
        }
        if let (Some(dl), true, None) = (&rules.dead_letters, Instant::now() >= next_look, &outage)
        {
            next_look = Instant::now() + RECONCILE_EVERY;
            match dl.reconcile().await {
                Ok(found) => {
                    dlq_trouble = false;
                    for (shard, reason) in found {
                        eprintln!(
                            "scanfleet: shard {shard} of scan {scan_id} was dead-lettered: {}",
                            scanfleet_common::text::escape(&reason, 300)
                        );
                    }
                    // Read progress again at once: those shards may have ended the scan.
                    continue;
                }
                Err(e) if !dlq_trouble => {
                    dlq_trouble = true;
                    eprintln!("scanfleet: {:#}; still following", anyhow::Error::new(e));
                }
                Err(_) => {}
            }
        }
        if let Some(d) = rules.deadline
            && started.elapsed() >= d
        {
            return Ok(Followed::DeadlineReached(last));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(Followed::Interrupted(last)),
            _ = tokio::time::sleep(rules.poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanfleet_common::ShardOutcome;
    use scanfleet_common::store::memory::MemoryStore;

    /// Follow with a hidden bar, polling every 100 ms (of paused time).
    async fn quietly(
        store: &dyn ResultStore,
        scan_id: &str,
        stop: &CancellationToken,
    ) -> Result<Followed, FollowError> {
        let bar = Bar::hidden();
        let shows = Watchers {
            bar: &bar,
            metrics: None,
        };
        let rules = Rules {
            poll: Duration::from_millis(100),
            deadline: Some(Duration::from_secs(3600)),
            dead_letters: None,
        };
        follow(store, scan_id, shows, rules, stop).await
    }

    #[tokio::test(start_paused = true)]
    async fn ends_when_every_shard_has_an_outcome() {
        let store = std::sync::Arc::new(MemoryStore::new());
        store.begin_scan("f", 2).await.unwrap();
        let s = store.clone();
        let finisher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            s.finish_shard("f", 0, &ShardOutcome::Done).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            s.finish_shard("f", 1, &ShardOutcome::Failed { reason: "x".into() })
                .await
                .unwrap();
        });
        let end = quietly(store.as_ref(), "f", &CancellationToken::new())
            .await
            .unwrap();
        finisher.await.unwrap();
        match end {
            Followed::Finished(p) => assert_eq!((p.shards_done, p.shards_failed), (1, 1)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_or_an_unknown_scan_ends_it() {
        let store = MemoryStore::new();
        store.begin_scan("g", 1).await.unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let end = quietly(&store, "g", &stop).await.unwrap();
        assert!(matches!(end, Followed::Interrupted(Some(_))));
        let e = quietly(&store, "nope", &stop).await.unwrap_err();
        assert!(matches!(e.source, StoreError::UnknownScan(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_of_no_shards_is_finished_at_once() {
        let store = MemoryStore::new();
        store.begin_scan("e", 0).await.unwrap();
        let end = quietly(&store, "e", &CancellationToken::new())
            .await
            .unwrap();
        assert!(matches!(end, Followed::Finished(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_ends_a_scan_that_would_wait_for_ever() {
        let store = MemoryStore::new();
        store.begin_scan("d", 2).await.unwrap();
        store
            .finish_shard("d", 0, &ShardOutcome::Done)
            .await
            .unwrap();
        let bar = Bar::hidden();
        let t0 = Instant::now();
        let end = follow(
            &store,
            "d",
            Watchers {
                bar: &bar,
                metrics: None,
            },
            Rules {
                poll: Duration::from_secs(1),
                deadline: Some(Duration::from_secs(60)),
                dead_letters: None,
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(t0.elapsed() >= Duration::from_secs(60));
        match end {
            Followed::DeadlineReached(Some(p)) => assert_eq!(p.shards_done, 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.unfinished_shards("d").await.unwrap(), [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shard_in_the_dead_letter_queue_ends_the_scan_failed() {
        use crate::reconcile::testing::{dead_letter, sealed};
        use scanfleet_common::queue::memory::MemoryQueue;
        let secret = b"s".repeat(32);
        let q = MemoryQueue::new(Duration::from_secs(30), 2);
        let store = MemoryStore::new();
        store.begin_scan("x", 1).await.unwrap();
        dead_letter(&q, &sealed("x", 0, &secret), "signature does not verify").await;
        let bar = Bar::hidden();
        let end = follow(
            &store,
            "x",
            Watchers {
                bar: &bar,
                metrics: None,
            },
            Rules {
                poll: Duration::from_millis(250),
                deadline: Some(Duration::from_secs(3600)),
                dead_letters: Some(DeadLetters {
                    admin: &q,
                    store: &store,
                    secret: Some(&secret),
                    scan_id: "x",
                }),
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        match end {
            Followed::Finished(p) => assert_eq!((p.shards_done, p.shards_failed), (0, 1)),
            other => panic!("{other:?}"),
        }
    }
}
