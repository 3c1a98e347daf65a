//! `scanfleet watch`: a daemon over EC2 state-change events. One JSON line per
//! event on stdout; with `--queue`, every newly running in-scope instance gets a
//! scan of its own, planned and published by the same steps as `scan` and with
//! the same probe settings (ports, rate, timeout, mode) the user gave.

use std::sync::Arc;
use std::time::Duration;

use scanfleet_common::Asset;
use scanfleet_common::config::Sources;
use scanfleet_common::text;
use tokio_util::sync::CancellationToken;

use crate::aws_cmd;
use crate::backends;
use crate::cli::{Format, ProgressWhen, WatchArgs};
use crate::config::{self, ScanSettings, Source, probe};
use crate::discovery::aws::AwsDiscoverer;
use crate::discovery::events::{self, WatchEvent, WatchOptions};
use crate::error::CliError;
use crate::plan;
use crate::report::{self, Output};

/// `scanfleet watch` until SIGINT or SIGTERM.
///
/// # Errors
/// Bad flags are input errors (before anything connects); discovery or queue
/// failures are runtime errors.
pub async fn watch(
    args: WatchArgs,
    src: &Sources,
    shutdown: CancellationToken,
) -> Result<(), CliError> {
    let events_queue = src
        .pick(
            ("--events-queue", args.events_queue.clone()),
            Some("SCANFLEET_EVENTS_QUEUE"),
            ("watch.events_queue", src.file.watch.events_queue.clone()),
            None,
        )?
        .ok_or_else(|| {
            CliError::Input(
                "no events queue: give --events-queue URL (the SQS queue EventBridge delivers EC2 state-change events to)".into(),
            )
        })?
        .value;
    let every = src
        .pick_or(
            ("--rediscover-every-secs", args.rediscover_every_secs),
            None,
            (
                "watch.rediscover_every_secs",
                src.file.watch.rediscover_every_secs,
            ),
            6 * 3600,
        )?
        .value;
    let template = template(&args, src)?;
    let opts = aws_cmd::options(&args.aws_args, src)?;

    let publisher = match &template.fleet {
        Some(f) => Some(backends::publisher(f, template.job_ttl).await?),
        None => None,
    };
    let discoverer = Arc::new(
        AwsDiscoverer::new(opts)
            .await
            .map_err(|e| CliError::Runtime(anyhow::Error::new(e).context("AWS discovery")))?,
    );
    let initial = discoverer
        .clone()
        .discover()
        .await
        .map_err(|e| CliError::Runtime(anyhow::Error::new(e).context("AWS discovery")))?;
    eprintln!(
        "scanfleet: watching {} with {} known asset(s)",
        text::escape(&events_queue, 200),
        initial.assets.len()
    );
    let mut wopts = WatchOptions::new(events_queue);
    wopts.rediscover_every = (every > 0).then(|| Duration::from_secs(every));
    let sqs = aws_sdk_sqs::Client::new(discoverer.sdk_config());
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(events::watch(
        discoverer.clone(),
        initial,
        wopts,
        sqs,
        tx,
        shutdown.clone(),
    ));
    while let Some(ev) = rx.recv().await {
        let (line, fresh) = describe(&ev);
        println!("{line}");
        let settings = ScanSettings {
            assets: fresh,
            ..template.clone()
        };
        let planned = plan::prepare(&settings);
        report::say_skipped(&planned.skipped);
        if let (Some(p), false) = (&publisher, planned.targets.is_empty()) {
            match p.publish(&planned).await {
                Ok(out) => eprintln!(
                    "scanfleet: scan {} queued: {}",
                    planned.scan_id,
                    report::count(out.shards as u64, "shard")
                ),
                Err(e) => eprintln!(
                    "scanfleet: could not queue the scan of new instances: {:#}",
                    anyhow::Error::new(e)
                ),
            }
        }
    }
    match task.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(CliError::Runtime(anyhow::Error::new(e).context("watch"))),
        Err(e) => Err(CliError::Runtime(anyhow::anyhow!("watch task: {e}"))),
    }
}

/// The settings of the scans of new instances: exactly what `scan --discover aws`
/// would use with the same flags (ports, rate, timeout, mode, scope), detached.
fn template(args: &WatchArgs, src: &Sources) -> Result<ScanSettings, CliError> {
    let (ports, profile) = probe::probe(&args.probe, src, probe::DefaultPorts::All)?;
    Ok(ScanSettings {
        assets: Vec::new(),
        source: Source::Aws(args.aws_args.clone()),
        ports,
        profile,
        scope: probe::scope(&args.scope, src, true)?,
        rate: probe::rate(src)?,
        workers: 1,
        format: Format::Jsonl,
        output: Output::default(),
        progress: ProgressWhen::Never,
        shard_size: 256,
        metrics_addr: None,
        fleet: config::fleet(&args.publish, src)?,
        detach: true,
        job_ttl: config::job_ttl(&args.publish, src)?,
        deadline: None,
        // Watched scans are published detached: nothing follows them to record a history.
        history: crate::history::Location::Dir(std::path::PathBuf::new()),
        judge: crate::findings::Judge::builtin().map_err(|e| CliError::Input(e.0))?,
        exports: Vec::new(),
    })
}

/// The JSON line of an event, and the assets it asks to scan.
fn describe(ev: &WatchEvent) -> (serde_json::Value, Vec<Asset>) {
    let ids = |v: &[Asset]| v.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    match ev {
        WatchEvent::Changed { diff, .. } => (
            serde_json::json!({"event": "changed", "new": ids(&diff.new), "changed": ids(&diff.changed), "gone": ids(&diff.gone)}),
            diff.new.iter().chain(&diff.changed).cloned().collect(),
        ),
        WatchEvent::Rediscovered { diff, failures } => (
            serde_json::json!({"event": "rediscovered", "new": ids(&diff.new), "changed": ids(&diff.changed), "gone": ids(&diff.gone), "failures": failures.len()}),
            diff.new.clone(),
        ),
        WatchEvent::Dropped { reason, .. } => (
            serde_json::json!({"event": "dropped", "reason": reason}),
            Vec::new(),
        ),
        WatchEvent::Failed { failure, .. } => (
            serde_json::json!({"event": "failed", "reason": failure.to_string()}),
            Vec::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use scanfleet_common::ScanMode;
    use scanfleet_common::config::FileConfig;

    fn watch_template(argv: &[&str]) -> ScanSettings {
        let cli = Cli::try_parse_from(
            [
                "scanfleet",
                "watch",
                "--events-queue",
                "http://127.0.0.1:1/q",
            ]
            .into_iter()
            .chain(argv.iter().copied()),
        )
        .unwrap();
        let Command::Watch(args) = cli.command else {
            panic!("not watch")
        };
        template(&args, &Sources::fixed(FileConfig::default(), None, &[])).unwrap()
    }

    #[test]
    fn the_scans_of_new_instances_use_the_probe_settings_given() {
        let s = watch_template(&[
            "-p",
            "22,443",
            "--rate",
            "300",
            "--timeout-ms",
            "2500",
            "--retries",
            "4",
            "--mode",
            "connect",
            "--no-service-detection",
        ]);
        assert_eq!(s.ports.to_string(), "22,443");
        assert_eq!(s.profile.mode, ScanMode::Connect);
        assert_eq!(s.profile.timeout_ms, 2500);
        assert_eq!(s.profile.retries, 4);
        assert!(!s.profile.service_detection);
        assert_eq!(s.profile.global_rate_pps, 300);
        // The jobs carry them: planned from the same settings as `scan`.
        let planned = plan::prepare(&ScanSettings {
            assets: vec![Asset {
                id: "i-0a".into(),
                instance_type: Some("m5.large".into()),
                account_id: Some("123456789012".into()),
                region: Some("us-east-1".into()),
                state: Some("running".into()),
                ..Asset::from_ip("10.0.0.5".parse().unwrap())
            }],
            ..s
        });
        assert_eq!(planned.targets.len(), 1, "{:?}", planned.skipped);
        let job = &planned.jobs[0];
        assert_eq!(job.profile.timeout_ms, 2500);
        assert_eq!(job.profile.mode, ScanMode::Connect);
        assert_eq!(job.ports.to_string(), "22,443");
        assert_eq!(job.profile.global_rate_pps, 300);
    }

    #[test]
    fn without_ports_a_new_instance_gets_every_port() {
        let s = watch_template(&[]);
        assert_eq!(s.ports.len(), 65535);
        assert!(s.detach && s.fleet.is_none());
    }
}
