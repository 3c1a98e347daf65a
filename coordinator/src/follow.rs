//! The follow step, one for every mode: read the scan's progress from the store
//! until every shard has an outcome ([`Progress::finished`], the one completion
//! rule) or the user interrupts, showing it on the progress bar and in the
//! `/metrics` gauges as it goes. A store outage is waited out and said once, with
//! its end; a permanent store error ends the follow.

use std::time::Duration;

use scanfleet_common::Progress;
use scanfleet_common::store::{ResultStore, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics::ScanMetrics;
use crate::progress::Bar;

/// How a follow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// Every shard has an outcome.
    Finished(Progress),
    /// The user interrupted; the last progress read, if any.
    Interrupted(Option<Progress>),
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

/// Follow a scan to its end.
///
/// # Errors
/// [`FollowError`] for a permanent store error (an unknown scan included).
pub async fn follow(
    store: &dyn ResultStore,
    scan_id: &str,
    show: Watchers<'_>,
    poll: Duration,
    shutdown: &CancellationToken,
) -> Result<Followed, FollowError> {
    let mut last = None;
    let mut outage: Option<StoreError> = None;
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
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(Followed::Interrupted(last)),
            _ = tokio::time::sleep(poll) => {}
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
        follow(store, scan_id, shows, Duration::from_millis(100), stop).await
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
}
