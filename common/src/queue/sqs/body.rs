//! Message bodies and attributes: payload bytes as SQS text, reasons, batches.

use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::queue::QueueError;

/// Message attribute holding the reason a message was dead-lettered.
pub const ATTR_REASON: &str = "scanfleet-reason";

/// Message attribute holding the zone a dead-lettered message came from.
pub const ATTR_ZONE: &str = "scanfleet-zone";

/// Message attribute marking a base64 body; its value is `base64`.
pub const ATTR_ENCODING: &str = "scanfleet-encoding";

/// Entries per SendMessageBatch, an SQS limit.
pub(super) const BATCH_ENTRIES: usize = 10;

/// Payload bytes per SendMessageBatch: the classic 256 KiB request limit, with room
/// for attributes.
pub(super) const BATCH_BYTES: usize = 250 * 1024;

/// Longest reason kept on a dead letter, in characters.
pub(super) const MAX_REASON_CHARS: usize = 1024;

/// Characters SQS accepts in message bodies and string attributes.
pub(super) fn is_sqs_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// A message body: the payload as text, or base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Body {
    pub(super) text: String,
    pub(super) base64: bool,
}

impl Body {
    pub(super) fn encode(payload: &[u8], queue: &str) -> Result<Body, QueueError> {
        if payload.is_empty() {
            return Err(QueueError::Permanent(format!(
                "SQS SendMessage on queue {queue}: SQS cannot carry an empty message"
            )));
        }
        Ok(match std::str::from_utf8(payload) {
            Ok(text) if text.chars().all(is_sqs_char) => Body {
                text: text.to_string(),
                base64: false,
            },
            _ => Body {
                text: BASE64.encode(payload),
                base64: true,
            },
        })
    }

    /// Rough request bytes of this entry, for batch sizing.
    pub(super) fn size(&self) -> usize {
        self.text.len() + if self.base64 { 64 } else { 0 }
    }
}

/// The payload of a received message. A body marked base64 that does not decode
/// is passed on as is: the consumer's envelope check rejects it as malformed.
pub(super) fn decode_body(m: &Message) -> Vec<u8> {
    let body = m.body().unwrap_or_default();
    if string_attr(m, ATTR_ENCODING).as_deref() == Some("base64")
        && let Ok(bytes) = BASE64.decode(body)
    {
        return bytes;
    }
    body.as_bytes().to_vec()
}

pub(super) fn string_attr(m: &Message, key: &str) -> Option<String> {
    m.message_attributes()?
        .get(key)?
        .string_value()
        .map(str::to_string)
}

pub(super) fn string_value(v: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| QueueError::Permanent(format!("SQS message attribute: {e}")))
}

pub(super) fn receipt_of<'m>(m: &'m Message, queue: &str) -> Result<&'m str, QueueError> {
    m.receipt_handle().ok_or_else(|| {
        QueueError::Transient(format!(
            "SQS ReceiveMessage on queue {queue}: a message without a receipt handle"
        ))
    })
}

/// A reason SQS will store: allowed characters only, bounded length.
pub(super) fn clean_reason(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if is_sqs_char(c) { c } else { '\u{FFFD}' })
        .collect();
    if cleaned.is_empty() {
        "no reason given".to_string()
    } else {
        cleaned
    }
}

/// Groups of indices into `bodies` that fit one SendMessageBatch each.
pub(super) fn batch_groups(bodies: &[Body]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (i, body) in bodies.iter().enumerate() {
        if !current.is_empty()
            && (current.len() == BATCH_ENTRIES || bytes + body.size() > BATCH_BYTES)
        {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += body.size();
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_text_or_base64() {
        let json = Body::encode(br#"{"v":1,"s":"tab\there"}"#, "q").unwrap();
        assert!(!json.base64);
        let bin = Body::encode(&[0, 159, 146, 150], "q").unwrap();
        assert!(bin.base64);
        assert_eq!(BASE64.decode(&bin.text).unwrap(), [0, 159, 146, 150]);
        // Valid UTF-8 with a control character SQS refuses.
        assert!(Body::encode(b"a\x01b", "q").unwrap().base64);
        assert!(Body::encode(b"", "q").is_err());
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small = Body {
            text: "x".into(),
            base64: false,
        };
        let sizes: Vec<usize> = batch_groups(&vec![small; 25])
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big = Body {
            text: "y".repeat(100 * 1024),
            base64: false,
        };
        let sizes: Vec<usize> = batch_groups(&vec![big; 5]).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(batch_groups(&[]).is_empty());
    }

    #[test]
    fn reasons_are_cleaned() {
        assert_eq!(clean_reason("bad\u{1}sig"), "bad\u{FFFD}sig");
        assert_eq!(clean_reason("").as_str(), "no reason given");
        assert_eq!(clean_reason(&"r".repeat(5000)).len(), MAX_REASON_CHARS);
    }
}
