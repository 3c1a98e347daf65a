//! AWS error answers: `scanfleet_common::aws::inspect` on a service error whose
//! HTTP answer has an arbitrary status and body (and so through the body's
//! `<Code>`/`<Message>` reader used when the SDK could not parse the document).
//!
//! Input: 2 bytes status, 1 byte flags (bit 0: the SDK found a code, bit 1: a
//! message), then the body.
//!
//! Invariants: the status is kept; a code or message read from the body is
//! non-empty and trimmed; the class follows the documented order (code, then
//! status: 429 throttles, 5xx transient, else permanent).
#![no_main]

use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::ErrorMetadata;
use libfuzzer_sys::fuzz_target;
use scanfleet_common::aws::{ErrorClass, inspect};

fuzz_target!(|data: &[u8]| {
    let [s0, s1, flags, body @ ..] = data else {
        return;
    };
    let status = 100 + u16::from_be_bytes([*s0, *s1]) % 900;
    let Ok(code) = StatusCode::try_from(status) else {
        return;
    };
    let mut meta = ErrorMetadata::builder();
    if flags & 1 == 1 {
        meta = meta.code("AccessDenied");
    }
    if flags & 2 == 2 {
        meta = meta.message("what the SDK read");
    }
    let answer = HttpResponse::new(code, SdkBody::from(body.to_vec()));
    let err: SdkError<ReceiveMessageError, HttpResponse> =
        SdkError::service_error(ReceiveMessageError::generic(meta.build()), answer);
    let info = inspect(&err);
    assert_eq!(info.status, Some(status));
    assert!(!info.message.is_empty());
    if flags & 1 == 1 {
        assert_eq!(info.code.as_deref(), Some("AccessDenied"));
    }
    if let Some(c) = &info.code {
        assert!(!c.is_empty() && c.trim() == c, "{c:?}");
    }
    if flags & 2 == 0 && std::str::from_utf8(body).is_ok_and(|b| b.contains("<Message>")) {
        assert_eq!(info.message.trim(), info.message);
    }
    let expected = info
        .code
        .as_deref()
        .and_then(ErrorClass::of_code)
        .or_else(|| ErrorClass::of_status(status))
        .unwrap_or(ErrorClass::Permanent);
    assert_eq!(info.class, expected, "class of {status} {:?}", info.code);
});
