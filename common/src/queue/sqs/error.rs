//! SDK errors to [`QueueError`]s that say whether to retry.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

use crate::queue::QueueError;

pub(super) fn prefix_error(e: QueueError, prefix: &str) -> QueueError {
    match e {
        QueueError::Transient(m) => QueueError::Transient(format!("{prefix}{m}")),
        QueueError::Permanent(m) => QueueError::Permanent(format!("{prefix}{m}")),
    }
}

/// Error codes that mean "later": throttling, overload, a server-side hiccup.
pub(super) fn is_transient_code(code: &str) -> bool {
    code.contains("Throttl")
        || code.ends_with("ServiceUnavailable")
        || code.ends_with("InternalError")
        || code.ends_with("InternalFailure")
        || matches!(
            code,
            "RequestThrottled"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "OverLimit"
                | "RequestTimeout"
                | "RequestTimeoutException"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "KmsThrottled"
        )
}

pub(super) fn is_missing_queue_code(code: &str) -> bool {
    matches!(
        code,
        "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" | "NonExistentQueue"
    )
}

/// Turn an SDK error into a [`QueueError`] that says whether to retry, naming the
/// operation and the queue. Connection failures, timeouts, throttling, 5xx and a
/// failing credentials provider are transient; a missing queue, denied access, an
/// invalid receipt handle, other client errors and no credentials at all are
/// permanent.
pub(super) fn sdk_error<E>(op: &str, queue: &str, err: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let at = format!("SQS {op} on queue {queue}");
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("unknown error");
            let detail = match ctx.err().message() {
                Some(m) if !m.is_empty() => format!("{code} (HTTP {status}): {m}"),
                _ => format!("{code} (HTTP {status})"),
            };
            if is_missing_queue_code(code) {
                QueueError::Permanent(format!(
                    "{at}: the queue does not exist ({detail}); create it with `scanfleet queues init`"
                ))
            } else if is_transient_code(code) || status >= 500 || status == 429 {
                QueueError::Transient(format!("{at}: {detail}"))
            } else {
                QueueError::Permanent(format!("{at}: {detail}"))
            }
        }
        SdkError::TimeoutError(_) => QueueError::Transient(format!("{at}: timed out")),
        SdkError::DispatchFailure(f) => {
            let text = chain(&err);
            match credentials_error(&err) {
                Some(
                    CredentialsError::CredentialsNotLoaded(_)
                    | CredentialsError::InvalidConfiguration(_),
                ) => QueueError::Permanent(format!("{at}: no usable AWS credentials: {text}")),
                // The provider timed out or failed (instance metadata, STS): later.
                Some(_) => QueueError::Transient(format!("{at}: {text}")),
                // Connection refused or reset, DNS, TLS.
                None if f.is_io() || f.is_timeout() || f.as_other().is_some() => {
                    QueueError::Transient(format!("{at}: {text}"))
                }
                // A bad endpoint URL, no way to sign, and the like: retrying cannot help.
                None => QueueError::Permanent(format!("{at}: {text}")),
            }
        }
        SdkError::ConstructionFailure(_) => QueueError::Permanent(format!("{at}: {}", chain(&err))),
        // An unreadable response, or whatever later SDKs add.
        _ => QueueError::Transient(format!("{at}: {}", chain(&err))),
    }
}

/// An error and its sources, `a: b: c`, without the repeats some layers add.
pub(super) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The credentials provider's error behind a failed call, if that is what failed.
pub(super) fn credentials_error<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e CredentialsError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(c);
        }
        next = e.source();
    }
    None
}
