//! The autoscaling group's terminating lifecycle hook (`--lifecycle-hook NAME`).
//!
//! The worker learns its instance id (IMDSv2, or `--instance-id`) and polls
//! `DescribeAutoScalingInstances` for it, every `--lifecycle-poll-secs`. Polling
//! the instance's own state, rather than reading hook notifications off an SQS
//! queue, needs no queue shared by the whole group (where each worker would have
//! to skip the others' notices) and no notification role: one read call per poll,
//! allowed by `autoscaling:DescribeAutoScalingInstances`.
//!
//! When the state is `Terminating:Wait` the worker drains as on SIGTERM: the
//! shutdown token is cancelled, so it stops receiving and finishes or releases
//! the shards in hand within its grace time. While it drains it sends
//! `RecordLifecycleActionHeartbeat` (at once, then every
//! `--lifecycle-heartbeat-secs`), and once drained `CompleteLifecycleAction`
//! with `CONTINUE`, so the instance terminates without waiting for the hook's
//! timeout. If the hook call fails, the hook's own timeout and default result
//! still end the wait: nothing is lost, the instance only lives longer.
//!
//! A worker stopped some other way (SIGTERM) looks once more after draining and
//! completes the action if its instance is waiting after all.

use std::time::Duration;

use aws_sdk_autoscaling::Client;
use scanfleet_common::aws::{ClientSettings, ProvideErrorMetadata};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The lifecycle state of an instance the terminating hook holds.
pub const TERMINATING_WAIT: &str = "Terminating:Wait";

/// Where instance metadata (IMDSv2) answers; only read without `--instance-id`.
const IMDS_ADDR: &str = "169.254.169.254:80";

/// Settings of the lifecycle-hook handling, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// Name of the terminating lifecycle hook of the worker's group.
    pub hook: String,
    /// This instance; `None`: ask instance metadata (IMDSv2).
    pub instance_id: Option<String>,
    /// How often the instance's lifecycle state is read.
    pub poll: Duration,
    /// How often a heartbeat is sent while the worker drains.
    pub heartbeat: Duration,
}

/// What the guard did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The instance was in `Terminating:Wait`; the worker drained, sent
    /// `heartbeats` heartbeats and completed the action with CONTINUE.
    Completed { group: String, heartbeats: u32 },
    /// The worker stopped for another reason; its instance was not waiting.
    NotTerminating,
}

/// A lifecycle call that failed, named with its operation.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LifecycleError(String);

fn sdk_error<E: ProvideErrorMetadata + std::fmt::Debug>(op: &str, e: &E) -> LifecycleError {
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => LifecycleError(format!("Auto Scaling {op}: {code}: {msg}")),
        (Some(code), None) => LifecycleError(format!("Auto Scaling {op}: {code}")),
        _ => LifecycleError(format!("Auto Scaling {op}: {e:?}")),
    }
}

/// Is `id` shaped like an EC2 instance id (`i-` and 8 or 17 hex digits)?
pub fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The instance's lifecycle-hook handling.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    client: Client,
    hook: String,
    instance_id: String,
    poll: Duration,
    heartbeat: Duration,
}

impl Lifecycle {
    /// With an Auto Scaling client built by the caller (tests point it at moto).
    pub fn new(client: Client, config: &LifecycleConfig, instance_id: String) -> Lifecycle {
        Lifecycle {
            client,
            hook: config.hook.clone(),
            instance_id,
            poll: config.poll,
            heartbeat: config.heartbeat,
        }
    }

    /// The client from the standard AWS configuration (`scanfleet_common::aws`,
    /// `AWS_ENDPOINT_URL` included) and the instance id from `config` or IMDSv2.
    ///
    /// # Errors
    /// When instance metadata does not give an instance id.
    pub async fn connect(config: &LifecycleConfig) -> Result<Lifecycle, LifecycleError> {
        let instance_id = match &config.instance_id {
            Some(id) => id.clone(),
            None => imds_instance_id().await?,
        };
        let sdk = scanfleet_common::aws::load(None).await;
        let sdk = scanfleet_common::aws::configure(&sdk, &ClientSettings::default());
        Ok(Lifecycle::new(Client::new(&sdk), config, instance_id))
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The instance's lifecycle state and group, `None` when Auto Scaling does
    /// not know the instance (yet, or any more).
    ///
    /// # Errors
    /// When DescribeAutoScalingInstances fails (after the SDK's retries).
    pub async fn state(&self) -> Result<Option<(String, String)>, LifecycleError> {
        let out = self
            .client
            .describe_auto_scaling_instances()
            .instance_ids(&self.instance_id)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeAutoScalingInstances", &e))?;
        Ok(out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(self.instance_id.as_str()))
            .and_then(|i| {
                Some((
                    i.lifecycle_state()?.to_string(),
                    i.auto_scaling_group_name()?.to_string(),
                ))
            }))
    }

    async fn heartbeat(&self, group: &str) -> Result<(), LifecycleError> {
        self.client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(&self.hook)
            .instance_id(&self.instance_id)
            .send()
            .await
            .map_err(|e| sdk_error("RecordLifecycleActionHeartbeat", &e))?;
        Ok(())
    }

    async fn complete(&self, group: &str) -> Result<(), LifecycleError> {
        self.client
            .complete_lifecycle_action()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(&self.hook)
            .instance_id(&self.instance_id)
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
            .map_err(|e| sdk_error("CompleteLifecycleAction", &e))?;
        Ok(())
    }

    /// Watch the instance until it is in `Terminating:Wait` or `shutdown` fires
    /// for another reason. On `Terminating:Wait`: cancel `shutdown` (the worker
    /// drains), send heartbeats until `drained` fires, then complete the action
    /// with CONTINUE. A failed poll is logged and tried again at the next one.
    ///
    /// # Errors
    /// When a heartbeat or CompleteLifecycleAction fails; the hook's timeout
    /// then ends the wait.
    pub async fn guard(
        &self,
        shutdown: CancellationToken,
        drained: CancellationToken,
    ) -> Result<Outcome, LifecycleError> {
        tracing::info!(instance = %self.instance_id, hook = %self.hook, "watching the terminating lifecycle hook");
        let group = loop {
            match self.state().await {
                Ok(Some((state, group))) if state == TERMINATING_WAIT => break group,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the instance's lifecycle state; trying again")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // Stopped another way: once drained, look once more.
                    drained.cancelled().await;
                    return match self.state().await {
                        Ok(Some((state, group))) if state == TERMINATING_WAIT => {
                            self.complete(&group).await?;
                            tracing::info!(%group, "drained; lifecycle action completed (CONTINUE)");
                            Ok(Outcome::Completed { group, heartbeats: 0 })
                        }
                        Ok(_) => Ok(Outcome::NotTerminating),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the instance's lifecycle state after draining");
                            Ok(Outcome::NotTerminating)
                        }
                    };
                }
                _ = tokio::time::sleep(self.poll) => {}
            }
        };
        tracing::info!(%group, "instance is Terminating:Wait: draining (stop receiving, finish or release shards in hand)");
        shutdown.cancel();
        let mut heartbeats = 0u32;
        loop {
            if drained.is_cancelled() {
                break;
            }
            match self.heartbeat(&group).await {
                Ok(()) => heartbeats += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "lifecycle heartbeat failed; the hook's timeout still holds")
                }
            }
            tokio::select! {
                _ = drained.cancelled() => break,
                _ = tokio::time::sleep(self.heartbeat) => {}
            }
        }
        self.complete(&group).await?;
        tracing::info!(%group, heartbeats, "drained; lifecycle action completed (CONTINUE)");
        Ok(Outcome::Completed { group, heartbeats })
    }
}

/// This instance's id from IMDSv2: a session token (PUT), then the id (GET).
async fn imds_instance_id() -> Result<String, LifecycleError> {
    let err = |what: &str| {
        LifecycleError(format!(
            "--lifecycle-hook: cannot read this instance's id from instance metadata ({IMDS_ADDR}): {what}; \
             pass --instance-id off EC2"
        ))
    };
    let token = imds_request(
        "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
         X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_string(),
    )
    .await
    .map_err(|e| err(&e))?;
    let id = imds_request(format!(
        "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\
         X-aws-ec2-metadata-token: {}\r\nConnection: close\r\n\r\n",
        token.trim()
    ))
    .await
    .map_err(|e| err(&e))?;
    let id = id.trim().to_string();
    if !is_instance_id(&id) {
        return Err(err(&format!("answer {id:?} is not an instance id")));
    }
    Ok(id)
}

/// One HTTP/1.1 exchange with instance metadata; the body of a 200 answer.
async fn imds_request(request: String) -> Result<String, String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(IMDS_ADDR)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.take(64 * 1024)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| "an answer without headers".to_string())?;
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(format!("answer {status:?}"));
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| "no answer within 2 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids() {
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(is_instance_id("i-12345678"));
        assert!(!is_instance_id("i-123"));
        assert!(!is_instance_id("0123456789abcdef0"));
        assert!(!is_instance_id("i-0123456789abcdefg"));
    }
}
