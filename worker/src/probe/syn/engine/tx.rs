//! The send side of the engine: every probe once, then retransmissions to each
//! target's silent ports until the retransmission model is done with it.

use super::*;

/// Send every probe, then retransmit to the silent ones of each target until
/// the retransmission model ([`super::retransmit`]) is done with it, waiting
/// for answers after each pass.
pub fn tx_loop(scan: &Scan, shared: &Shared, socks: TxSockets, params: TxParams) -> TxReport {
    let nt = scan.targets.entries.len();
    let now = tokio::time::Instant::now();
    let pacing = params.pacing;
    let start_of = |ceiling: u32| -> u32 {
        if pacing.adaptive {
            ((u64::from(ceiling) * u64::from(pacing.start_percent) / 100).max(1)) as u32
        } else {
            ceiling
        }
    };
    let aimd: Vec<Aimd> = scan
        .targets
        .entries
        .iter()
        .map(|e| {
            let ceiling = e.rate_pps.max(1);
            Aimd::new(
                start_of(ceiling),
                (ceiling / 32).max(1),
                ceiling,
                pacing.aimd,
                now,
            )
        })
        .collect();
    let mut tx = Tx {
        scan,
        shared,
        socks,
        buckets: aimd
            .iter()
            .map(|a| TokenBucket::smooth(a.rate_pps()))
            .collect(),
        global: TokenBucket::smooth(params.global_rate_pps),
        global_base_pps: params.global_rate_pps,
        global_permille: 1000,
        aimd,
        adaptive: pacing.adaptive,
        sent: vec![0; nt],
        retrans: vec![0; nt],
        done: vec![false; nt],
        next_control: Instant::now(),
        deferred: vec![VecDeque::new(); nt],
        pending: Vec::new(),
        deferred_total: 0,
        next_service: Instant::now(),
        pass: 0,
        report: TxReport::default(),
        sent_this_pass: 0,
    };
    let mut models = vec![LossModel::default(); nt];
    let mut seen = vec![0u64; nt];
    let ports = u64::from(scan.ports.len());
    let max_passes = 1 + u32::from(params.retries.max(pacing.max_retries));
    for pass in 0..max_passes {
        tx.pass = pass;
        if pass > 0 && tx.all_answered() {
            break;
        }
        if pass > 0 {
            let tnow = tokio::time::Instant::now();
            for t in 0..nt {
                let a = shared.answered_by_target[t].load(Ordering::Relaxed);
                tx.aimd[t].new_pass(tnow, tx.sent[t], a);
            }
        }
        let sent = match tx.pass() {
            Ok(s) => s,
            Err(Stopped) => {
                tx.report.stopped = true;
                break;
            }
        };
        tx.report.passes = pass + 1;
        let o = Ordering::Relaxed;
        tracing::debug!(
            pass,
            sent,
            answered = shared.answered_count.load(o),
            rx_dropped = shared.rx_dropped.load(o),
            rto_us = shared.rto_us.load(o),
            "SYN pass sent"
        );
        let waited = if sent == 0 && tx.report.send_failures == 0 {
            Ok(())
        } else {
            tx.wait_for_answers(Instant::now(), params.rto_ceiling)
        };
        if waited.is_err() {
            tx.report.stopped = true;
            break;
        }
        // The model decides, per target, whether its silent ports get another attempt.
        let mut any = false;
        for t in 0..nt {
            if tx.done[t] || scan.targets.entries[t].skip.is_some() {
                continue;
            }
            let a = shared.answered_by_target[t].load(o);
            models[t].record_pass(a.saturating_sub(seen[t]));
            seen[t] = a;
            let silent = ports.saturating_sub(a);
            let next = models[t].next(
                silent,
                pacing.miss_one_in,
                pacing.max_retries,
                params.retries,
            );
            if next == Next::Done {
                tx.done[t] = true;
            } else {
                any = true;
            }
        }
        if !any || (sent == 0 && tx.report.send_failures == 0) {
            break;
        }
    }
    tx.flush();
    let o = Ordering::Relaxed;
    tx.report.targets = (0..nt)
        .map(|t| {
            let answered = shared.answered_by_target[t].load(o);
            let probed = scan.targets.entries[t].skip.is_none();
            let m = &models[t];
            TargetReport {
                probes_sent: tx.sent[t],
                retransmits: tx.retrans[t],
                answered,
                ports: if probed { ports } else { 0 },
                loss: if m.attempts() > 1 { m.loss() } else { 0.0 },
                miss_chance: if probed {
                    m.miss_chance(ports.saturating_sub(answered))
                } else {
                    0.0
                },
                ceiling_pps: scan.targets.entries[t].rate_pps,
                max_rate_pps: if tx.sent[t] > 0 {
                    tx.aimd[t].max_rate_pps()
                } else {
                    0
                },
                backoffs: tx.aimd[t].backoffs(),
                attempts: m.attempts(),
            }
        })
        .collect();
    tx.report
}
