//! Whether a failed AWS call is worth trying again.
//!
//! The codes come from the SDK's own retry classifiers
//! (`aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS}`),
//! the modeled retryability of each operation's errors
//! ([`ProvideErrorKind::retryable_error_kind`]) and the HTTP status (429
//! throttles, 5xx is the server's trouble), so that a code the SDK learns, such
//! as `EC2ThrottledException`, is known here without a list of our own.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::{ErrorKind, ProvideErrorKind};

/// Codes that mean "later" although the SDK does not retry them: an SQS queue's
/// KMS key throttled, too many messages in flight on a queue (`OverLimit`), and
/// session credentials that expired under a long call (the provider renews them).
pub const EXTRA_TRANSIENT_CODES: &[&str] = &[
    "KmsThrottled",
    "OverLimit",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// Whether to try a failed call again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// AWS said slow down: retry later, with backoff.
    Throttling,
    /// A timeout, a broken connection, a server error: retry later.
    Transient,
    /// Denied, missing, invalid, no credentials: retrying cannot help.
    Permanent,
}

impl ErrorClass {
    /// True for [`ErrorClass::Throttling`] and [`ErrorClass::Transient`].
    pub fn is_retryable(self) -> bool {
        self != ErrorClass::Permanent
    }

    /// The class of an AWS error code, when the code alone decides it.
    pub fn of_code(code: &str) -> Option<ErrorClass> {
        if THROTTLING_ERRORS.contains(&code) {
            Some(ErrorClass::Throttling)
        } else if TRANSIENT_ERRORS.contains(&code) || EXTRA_TRANSIENT_CODES.contains(&code) {
            Some(ErrorClass::Transient)
        } else {
            None
        }
    }

    /// The class of an HTTP status of an error answer, when the status alone
    /// decides it (429 and 5xx).
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        match status {
            429 => Some(ErrorClass::Throttling),
            500..=599 => Some(ErrorClass::Transient),
            _ => None,
        }
    }

    /// The SDK's retry kind of this class; `None` for [`ErrorClass::Permanent`].
    pub fn kind(self) -> Option<ErrorKind> {
        match self {
            ErrorClass::Throttling => Some(ErrorKind::ThrottlingError),
            ErrorClass::Transient => Some(ErrorKind::TransientError),
            ErrorClass::Permanent => None,
        }
    }
}

impl From<ErrorKind> for ErrorClass {
    /// Every SDK retry kind is retryable; throttling stays throttling.
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::ThrottlingError => ErrorClass::Throttling,
            _ => ErrorClass::Transient,
        }
    }
}

/// What a failed AWS call says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsErrorInfo {
    /// Whether to try again.
    pub class: ErrorClass,
    /// The AWS error code (`AccessDenied`, `RequestLimitExceeded`), when the
    /// service answered with one.
    pub code: Option<String>,
    /// The service's message, else the error and its causes (`a: b: c`).
    pub message: String,
    /// The HTTP status of the service's answer.
    pub status: Option<u16>,
}

/// Read a failed call: its code, message, status and [`ErrorClass`].
///
/// A service error is classified by its code, its modeled retryability, then
/// its HTTP status; any other 4xx answer is permanent. A timeout, an unreadable
/// answer and a connection that failed (refused, reset, DNS, TLS) are transient;
/// so is a credentials provider that failed or timed out, while no credentials
/// at all, a bad credentials configuration, a bad endpoint or a request that
/// could not be built are permanent.
///
/// Some endpoints (moto's IAM enforcement, proxies) answer with an error
/// document of another protocol that the SDK cannot parse: the code and message
/// are then read from the body's `<Code>` and `<Message>`.
pub fn inspect<E>(err: &SdkError<E, HttpResponse>) -> AwsErrorInfo
where
    E: ProvideErrorMetadata + ProvideErrorKind + StdError + 'static,
{
    let class_of_dispatch = |is_transport: bool| match credentials_error(err) {
        Some(
            CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_),
        ) => ErrorClass::Permanent,
        // The provider timed out or failed (instance metadata, STS): later.
        Some(_) => ErrorClass::Transient,
        None if is_transport => ErrorClass::Transient,
        None => ErrorClass::Permanent,
    };
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let status = ctx.raw().status().as_u16();
            let mut code = ProvideErrorMetadata::code(e).map(str::to_string);
            let mut message = ProvideErrorMetadata::message(e)
                .filter(|m| !m.is_empty())
                .map(str::to_string);
            if code.is_none()
                && let Some(body) = ctx
                    .raw()
                    .body()
                    .bytes()
                    .and_then(|b| std::str::from_utf8(b).ok())
            {
                code = xml_element(body, "Code");
                message = message.or_else(|| xml_element(body, "Message"));
            }
            let class = code
                .as_deref()
                .and_then(ErrorClass::of_code)
                .or_else(|| e.retryable_error_kind().map(ErrorClass::from))
                .or_else(|| ErrorClass::of_status(status))
                .unwrap_or(ErrorClass::Permanent);
            AwsErrorInfo {
                class,
                code,
                message: message.unwrap_or_else(|| chain(err)),
                status: Some(status),
            }
        }
        _ => {
            let class = match err {
                SdkError::TimeoutError(_) | SdkError::ResponseError(_) => ErrorClass::Transient,
                SdkError::DispatchFailure(f) => {
                    class_of_dispatch(f.is_io() || f.is_timeout() || f.as_other().is_some())
                }
                SdkError::ConstructionFailure(_) => class_of_dispatch(false),
                // Whatever later SDKs add: assume it passes.
                _ => ErrorClass::Transient,
            };
            AwsErrorInfo {
                class,
                code: None,
                message: chain(err),
                status: None,
            }
        }
    }
}

/// The [`ErrorClass`] of a failed call; see [`inspect`].
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> ErrorClass
where
    E: ProvideErrorMetadata + ProvideErrorKind + StdError + 'static,
{
    inspect(err).class
}

/// An error and its causes, `a: b: c`, without the repeats some layers add.
pub(crate) fn chain(err: &(dyn StdError + 'static)) -> String {
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
pub(crate) fn credentials_error<'e>(
    err: &'e (dyn StdError + 'static),
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

/// The text of the first `<name>` element of an XML document, unescaped for the
/// five predefined entities; `None` when absent or empty.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{name}>"))?;
    let text = body[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
    use aws_sdk_sqs::types::error::{KmsThrottled, QueueDoesNotExist};
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    type Err = SdkError<ReceiveMessageError, HttpResponse>;

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse::new(
            StatusCode::try_from(status).expect("valid status"),
            SdkBody::from(body.to_string()),
        )
    }

    fn service(code: Option<&str>, status: u16) -> Err {
        let mut meta = ErrorMetadata::builder().message("what the service said");
        if let Some(c) = code {
            meta = meta.code(c);
        }
        SdkError::service_error(
            ReceiveMessageError::generic(meta.build()),
            answer(status, ""),
        )
    }

    #[test]
    fn the_sdks_throttling_codes_are_throttling() {
        // EC2's own throttling code: missing from every list this code base had.
        for code in [
            "EC2ThrottledException",
            "RequestLimitExceeded",
            "Throttling",
            "ThrottlingException",
            "SlowDown",
            "TooManyRequestsException",
        ] {
            let info = inspect(&service(Some(code), 400));
            assert_eq!(info.class, ErrorClass::Throttling, "{code}");
            assert_eq!(info.code.as_deref(), Some(code));
            assert_eq!(info.status, Some(400));
            assert_eq!(info.message, "what the service said");
        }
        assert_eq!(
            classify(&service(Some("RequestTimeout"), 400)),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&service(Some("KmsThrottled"), 400)),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&service(Some("ExpiredToken"), 400)),
            ErrorClass::Transient
        );
    }

    #[test]
    fn client_errors_are_permanent_and_server_errors_transient() {
        for code in [
            "AccessDenied",
            "AWS.SimpleQueueService.NonExistentQueue",
            "InvalidAddress",
            "UnauthorizedOperation",
        ] {
            let c = classify(&service(Some(code), 400));
            assert_eq!(c, ErrorClass::Permanent, "{code}");
            assert!(!c.is_retryable());
        }
        // No code the lists know: the status decides.
        assert_eq!(
            classify(&service(Some("InternalError"), 500)),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&service(Some("ServiceUnavailable"), 503)),
            ErrorClass::Transient
        );
        assert_eq!(classify(&service(None, 429)), ErrorClass::Throttling);
        assert_eq!(classify(&service(None, 404)), ErrorClass::Permanent);
        assert!(ErrorClass::Throttling.is_retryable() && ErrorClass::Transient.is_retryable());
    }

    #[test]
    fn modeled_errors_keep_their_codes() {
        let missing = SdkError::service_error(
            ReceiveMessageError::QueueDoesNotExist(
                QueueDoesNotExist::builder()
                    .meta(ErrorMetadata::builder().code("QueueDoesNotExist").build())
                    .build(),
            ),
            answer(400, ""),
        );
        assert_eq!(classify(&missing), ErrorClass::Permanent);
        let kms = SdkError::service_error(
            ReceiveMessageError::KmsThrottled(
                KmsThrottled::builder()
                    .meta(ErrorMetadata::builder().code("KmsThrottled").build())
                    .build(),
            ),
            answer(400, ""),
        );
        assert_eq!(classify(&kms), ErrorClass::Transient);
    }

    #[test]
    fn codes_of_unparsed_error_documents_are_read_from_the_body() {
        let body = "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: a &amp; b</Message></Error></Errors></ErrorResponse>";
        let err: Err = SdkError::service_error(
            ReceiveMessageError::generic(ErrorMetadata::builder().build()),
            answer(403, body),
        );
        let info = inspect(&err);
        assert_eq!(info.code.as_deref(), Some("AccessDenied"));
        assert_eq!(info.message, "User: a & b");
        assert_eq!(info.class, ErrorClass::Permanent);
        let throttled: Err = SdkError::service_error(
            ReceiveMessageError::generic(ErrorMetadata::builder().build()),
            answer(
                400,
                "<Response><Errors><Error><Code>EC2ThrottledException</Code></Error></Errors></Response>",
            ),
        );
        assert_eq!(classify(&throttled), ErrorClass::Throttling);
        assert_eq!(xml_element(body, "RequestId"), None);
        assert_eq!(xml_element("<Code></Code>", "Code"), None);
    }

    #[test]
    fn transport_and_credentials_failures() {
        let refused: Err = SdkError::dispatch_failure(ConnectorError::io(Box::new(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
        )));
        let info = inspect(&refused);
        assert_eq!(info.class, ErrorClass::Transient);
        assert_eq!((info.code, info.status), (None, None));
        assert!(
            info.message.contains("connection refused"),
            "{}",
            info.message
        );

        let timeout: Err = SdkError::timeout_error("attempt took too long");
        assert_eq!(classify(&timeout), ErrorClass::Transient);

        let bad_endpoint: Err =
            SdkError::dispatch_failure(ConnectorError::user("invalid URI".into()));
        assert_eq!(classify(&bad_endpoint), ErrorClass::Permanent);

        let no_creds: Err = SdkError::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::not_loaded("no provider gave credentials")),
            None,
        ));
        assert_eq!(classify(&no_creds), ErrorClass::Permanent);
        let provider_down: Err = SdkError::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::provider_timed_out(
                std::time::Duration::from_secs(5),
            )),
            None,
        ));
        assert_eq!(classify(&provider_down), ErrorClass::Transient);

        let unbuildable: Err = SdkError::construction_failure("missing field");
        assert_eq!(classify(&unbuildable), ErrorClass::Permanent);
    }

    #[test]
    fn classes_map_to_the_sdks_kinds() {
        assert_eq!(
            ErrorClass::from(ErrorKind::ThrottlingError),
            ErrorClass::Throttling
        );
        assert_eq!(
            ErrorClass::from(ErrorKind::ServerError),
            ErrorClass::Transient
        );
        assert_eq!(
            ErrorClass::Throttling.kind(),
            Some(ErrorKind::ThrottlingError)
        );
        assert_eq!(ErrorClass::Permanent.kind(), None);
        assert_eq!(ErrorClass::of_status(502), Some(ErrorClass::Transient));
        assert_eq!(ErrorClass::of_status(400), None);
        assert_eq!(
            ErrorClass::of_code("EC2ThrottledException"),
            Some(ErrorClass::Throttling)
        );
        assert_eq!(ErrorClass::of_code("AccessDenied"), None);
    }
}
