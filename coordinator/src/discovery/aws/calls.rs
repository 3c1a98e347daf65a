//! What every API call did: counted per operation (requests and attempts, by
//! an interceptor on every client), and when it failed, a [`Failure`] that says
//! whether retrying later may help.

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::ConfigBag;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use scanfleet_common::aws::ProvideErrorKind;

use crate::discovery::{ApiCalls, Failure};
use crate::estate::network::Location;

/// Counts requests and attempts per operation, for every client it is attached to.
#[derive(Debug, Default)]
pub(super) struct CallCounter {
    calls: Mutex<ApiCalls>,
}

impl CallCounter {
    pub(super) fn bump(&self, cfg: &ConfigBag, attempt: bool) {
        let name = cfg.load::<Metadata>().map_or_else(
            || "unknown".to_string(),
            |m| format!("{}:{}", m.service().to_ascii_lowercase(), m.name()),
        );
        if let Ok(mut c) = self.calls.lock() {
            let map = if attempt {
                &mut c.attempts
            } else {
                &mut c.requests
            };
            *map.entry(name).or_insert(0) += 1;
        }
    }

    pub(super) fn snapshot(&self) -> ApiCalls {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub(super) struct CountCalls(pub(super) Arc<CallCounter>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "scanfleet-count-calls"
    }

    /// Once per operation (an attempt does not serialize again).
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.bump(cfg, false);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.bump(cfg, true);
        Ok(())
    }
}

/// Turn an SDK error into a [`Failure`] that says whether retrying later may
/// help, by [`scanfleet_common::aws::inspect`].
pub(super) fn failure<E>(
    op: &str,
    err: &SdkError<E, HttpResponse>,
    at: Option<&Location>,
    account: Option<&str>,
) -> Failure
where
    E: ProvideErrorMetadata + ProvideErrorKind + std::error::Error + 'static,
{
    let info = scanfleet_common::aws::inspect(err);
    Failure {
        account_id: at
            .map(|l| l.account_id.clone())
            .or_else(|| account.map(str::to_string)),
        region: at.map(|l| l.region.clone()),
        operation: op.to_string(),
        code: info.code,
        message: info.message,
        transient: info.class.is_retryable(),
    }
}

pub(super) fn subtract(calls: &mut ApiCalls, before: &ApiCalls) {
    for (k, v) in &before.requests {
        if let Some(x) = calls.requests.get_mut(k) {
            *x = x.saturating_sub(*v);
        }
    }
    for (k, v) in &before.attempts {
        if let Some(x) = calls.attempts.get_mut(k) {
            *x = x.saturating_sub(*v);
        }
    }
    calls.requests.retain(|_, v| *v > 0);
    calls.attempts.retain(|_, v| *v > 0);
}
