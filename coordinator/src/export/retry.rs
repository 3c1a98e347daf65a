//! Bounded retries of AWS calls for the senders (Security Hub, EventBridge):
//! throttling and transient errors wait with exponential backoff and jitter and
//! try again, permanent errors return at once.

use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use scanfleet_common::aws::ErrorClass;

/// Backoff before the second attempt; doubled each attempt, at most [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Run `call` until it succeeds, fails for good, or `attempts` are used;
/// throttling and transient errors wait (exponential, jittered, capped) and try
/// again. Returns the last outcome and how many retries it took.
pub(crate) async fn with_backoff<T, E, F, Fut>(
    attempts: u32,
    mut call: F,
) -> (Result<T, SdkError<E, HttpResponse>>, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: scanfleet_common::aws::ProvideErrorMetadata
        + scanfleet_common::aws::ProvideErrorKind
        + std::error::Error
        + 'static,
{
    retrying(attempts, &mut call, |e| scanfleet_common::aws::classify(e)).await
}

/// [`with_backoff`] with the error's class decided by `class` (so the loop can
/// be tested without AWS).
pub(crate) async fn retrying<T, E, F, Fut>(
    attempts: u32,
    call: &mut F,
    class: impl Fn(&E) -> ErrorClass,
) -> (Result<T, E>, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let attempts = attempts.max(1);
    let mut retries = 0;
    loop {
        match call().await {
            Ok(v) => return (Ok(v), retries),
            Err(e) if retries + 1 < attempts as usize && class(&e).is_retryable() => {
                let exp = BACKOFF_BASE.saturating_mul(1 << retries.min(16));
                let cap = exp.min(BACKOFF_MAX);
                // Full jitter over the upper half: never zero, never above the cap.
                let jitter =
                    rand::random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                retries += 1;
            }
            Err(e) => return (Err(e), retries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn throttling_is_retried_with_backoff_and_bounded() {
        // Throttled twice, then through.
        let mut n = 0;
        let (out, retries) = retrying(
            5,
            &mut || {
                n += 1;
                let k = n;
                async move {
                    if k < 3 {
                        Err("ThrottlingException")
                    } else {
                        Ok(k)
                    }
                }
            },
            |_| ErrorClass::Throttling,
        )
        .await;
        assert_eq!((out, retries), (Ok(3), 2));
        // Always throttled: gives up after the attempts.
        let mut calls = 0;
        let started = tokio::time::Instant::now();
        let (out, retries): (Result<(), _>, _) = retrying(
            4,
            &mut || {
                calls += 1;
                async { Err("TooManyRequestsException") }
            },
            |_| ErrorClass::Throttling,
        )
        .await;
        assert_eq!(
            (out, retries, calls),
            (Err("TooManyRequestsException"), 3, 4)
        );
        // It waited between attempts (paused clock: virtual time).
        assert!(started.elapsed() >= Duration::from_millis(100 + 200 + 400));
        // A permanent error is not retried.
        let mut calls = 0;
        let (_, retries): (Result<(), _>, _) = retrying(
            4,
            &mut || {
                calls += 1;
                async { Err("AccessDeniedException") }
            },
            |_| ErrorClass::Permanent,
        )
        .await;
        assert_eq!((retries, calls), (0, 1));
    }
}
