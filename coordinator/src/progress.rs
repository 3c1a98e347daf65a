//! The progress bar: on stderr, only when stderr is a terminal (or forced), so
//! pipelines and CI logs stay clean. It counts (target, port) pairs decided, as
//! workers report them per result batch, in the embedded mode and in a fleet.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use scanfleet_common::Progress;

use crate::cli::ProgressWhen;

/// A progress bar over a scan's (target, port) pairs, or nothing.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar of `pairs` when `when` allows it.
    pub fn new(when: ProgressWhen, pairs: u64) -> Self {
        let show = match when {
            ProgressWhen::Always => true,
            ProgressWhen::Never => false,
            ProgressWhen::Auto => std::io::stderr().is_terminal(),
        };
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(Some(pairs), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Bar { bar }
    }

    /// A bar that draws nothing.
    pub fn hidden() -> Self {
        Bar { bar: None }
    }

    /// Show a progress reading: pairs decided, shards with an outcome, results.
    pub fn update(&self, p: &Progress) {
        if let Some(b) = &self.bar {
            let len = b.length().unwrap_or(p.ports_done);
            b.set_position(p.ports_done.min(len));
            b.set_message(format!(
                "{}/{} shards, {} results",
                p.shards_done + p.shards_failed,
                p.shards_total,
                p.results
            ));
        }
    }

    /// Take the bar off the terminal.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
