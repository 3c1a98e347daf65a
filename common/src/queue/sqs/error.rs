//! SDK errors to [`QueueError`]s that say whether to retry. Whether to retry is
//! [`crate::aws::inspect`]'s answer, the one every AWS client of scanfleet shares;
//! this module only words it for a queue.

use std::error::Error as StdError;

use crate::aws::{self, ProvideErrorKind};
use crate::queue::QueueError;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

pub(super) fn prefix_error(e: QueueError, prefix: &str) -> QueueError {
    match e {
        QueueError::Transient(m) => QueueError::Transient(format!("{prefix}{m}")),
        QueueError::Permanent(m) => QueueError::Permanent(format!("{prefix}{m}")),
    }
}

pub(super) fn is_missing_queue_code(code: &str) -> bool {
    matches!(
        code,
        "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" | "NonExistentQueue"
    )
}

/// Turn an SDK error into a [`QueueError`] that says whether to retry, naming the
/// operation and the queue. The class is [`aws::inspect`]'s: connection failures,
/// timeouts, throttling, 5xx and a failing credentials provider are transient; a
/// missing queue, denied access, an invalid receipt handle, other client errors
/// and no credentials at all are permanent.
pub(super) fn sdk_error<E>(op: &str, queue: &str, err: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + ProvideErrorKind + StdError + Send + Sync + 'static,
{
    let at = format!("SQS {op} on queue {queue}");
    let info = aws::inspect(&err);
    let text = match (&err, info.status) {
        (SdkError::ServiceError(ctx), Some(status)) => {
            let code = info.code.as_deref().unwrap_or("unknown error");
            // The service's own message only; `inspect` falls back to the error chain.
            let message = ctx.err().message().filter(|m| !m.is_empty());
            let detail = match message {
                Some(m) => format!("{code} (HTTP {status}): {m}"),
                None => format!("{code} (HTTP {status})"),
            };
            if is_missing_queue_code(code) {
                return QueueError::Permanent(format!(
                    "{at}: the queue does not exist ({detail}); create it with `scanfleet queues init`"
                ));
            }
            detail
        }
        (SdkError::TimeoutError(_), _) => "timed out".to_string(),
        _ => match aws::credentials_error(&err) {
            Some(
                CredentialsError::CredentialsNotLoaded(_)
                | CredentialsError::InvalidConfiguration(_),
            ) if matches!(err, SdkError::DispatchFailure(_)) => {
                format!("no usable AWS credentials: {}", aws::chain(&err))
            }
            _ => info.message,
        },
    };
    if info.class.is_retryable() {
        QueueError::Transient(format!("{at}: {text}"))
    } else {
        QueueError::Permanent(format!("{at}: {text}"))
    }
}
