//! Message headers: the delivery limit a declarer stamps on each job, the reason
//! and zone scanfleet sets on dead letters, and the broker's delivery count and
//! `x-death` record read back from them.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

/// Header carrying the reason of a message dead-lettered by a consumer.
pub const REASON_HEADER: &str = "x-scanfleet-reason";
/// Header carrying the zone of a message dead-lettered by a consumer.
pub const ZONE_HEADER: &str = "x-scanfleet-zone";
/// Header carrying the delivery limit of the queue a job was published to, set by
/// the client that declared that queue: a consumer cannot read queue arguments
/// over AMQP, so the limit travels with the message.
pub const LIMIT_HEADER: &str = "x-scanfleet-delivery-limit";

/// The delivery limit stamped on a message, if a declarer stamped one.
pub(super) fn delivery_limit(props: &BasicProperties) -> Option<u32> {
    headers(props)
        .and_then(|h| h.inner().get(LIMIT_HEADER))
        .and_then(header_int)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

/// The payload headers' value as an integer, whatever AMQP integer type carries it.
pub(super) fn header_int(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

pub(super) fn header_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        _ => None,
    }
}

pub(super) fn headers(props: &BasicProperties) -> Option<&FieldTable> {
    props.headers().as_ref()
}

/// Deliveries so far, this one included: quorum queues count earlier deliveries in
/// `x-delivery-count` (absent on the first one).
pub(super) fn delivery_count(props: &BasicProperties, redelivered: bool) -> u32 {
    let earlier = headers(props)
        .and_then(|h| h.inner().get("x-delivery-count"))
        .and_then(header_int);
    match earlier {
        Some(n) => u32::try_from(n.max(0))
            .unwrap_or(u32::MAX)
            .saturating_add(1),
        None if redelivered => 2,
        None => 1,
    }
}

/// Why a message is in the dead-letter queue: ours if a consumer put it there, the
/// broker's `x-death` reason otherwise.
pub(super) fn dead_reason(props: &BasicProperties) -> String {
    let h = headers(props);
    if let Some(r) = h
        .and_then(|h| h.inner().get(REASON_HEADER))
        .and_then(header_str)
    {
        return r;
    }
    let death = h
        .and_then(|h| h.inner().get("x-death"))
        .and_then(|v| match v {
            AMQPValue::FieldArray(a) => a.as_slice().first().cloned(),
            _ => None,
        })
        .and_then(|v| match v {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        });
    match death {
        Some(t) => {
            let reason = t
                .inner()
                .get("reason")
                .and_then(header_str)
                .unwrap_or_default();
            if reason == "delivery_limit" {
                match delivery_limit(props) {
                    Some(n) => format!("delivery limit of {n} reached"),
                    None => "delivery limit reached".into(),
                }
            } else {
                format!("dead-lettered by the broker: {reason}")
            }
        }
        None => "dead-lettered for an unknown reason".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_count_from_quorum_header() {
        let mut h = FieldTable::default();
        h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        let p = BasicProperties::default().with_headers(h);
        assert_eq!(delivery_count(&p, true), 3);
        assert_eq!(delivery_count(&BasicProperties::default(), false), 1);
    }

    #[test]
    fn stamped_limit_is_read_back() {
        let mut h = FieldTable::default();
        h.insert(LIMIT_HEADER.into(), AMQPValue::LongUInt(2));
        assert_eq!(
            delivery_limit(&BasicProperties::default().with_headers(h)),
            Some(2)
        );
        let mut h = FieldTable::default();
        h.insert(LIMIT_HEADER.into(), AMQPValue::LongLongInt(-1));
        assert_eq!(
            delivery_limit(&BasicProperties::default().with_headers(h)),
            None
        );
        assert_eq!(delivery_limit(&BasicProperties::default()), None);
    }

    #[test]
    fn reason_prefers_our_header() {
        let mut h = FieldTable::default();
        h.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString("bad signature".into()),
        );
        assert_eq!(
            dead_reason(&BasicProperties::default().with_headers(h)),
            "bad signature"
        );
        assert_eq!(
            dead_reason(&BasicProperties::default()),
            "dead-lettered for an unknown reason"
        );
    }
}
