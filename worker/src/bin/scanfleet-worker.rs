//! `scanfleet-worker`: a fleet worker process. It pulls shards from a broker
//! (`--queue`) and writes results to Redis (`--redis`). The broker and Redis
//! backends arrive with the fleet work; until then this binary validates its
//! flags and says which backends it has, and `scanfleet scan` runs workers
//! in-process.

use clap::Parser;

/// A scanfleet worker.
#[derive(Debug, Parser)]
#[command(name = "scanfleet-worker", version, about)]
struct Args {
    /// Job queue: amqp://user:pass@host:port/vhost, sqs://NAME or an SQS queue URL.
    #[arg(long, env = "SCANFLEET_QUEUE")]
    queue: String,
    /// Result store: redis://host:port.
    #[arg(long, env = "SCANFLEET_REDIS")]
    redis: String,
    /// Network zone whose queue this worker serves.
    #[arg(long, default_value = "default")]
    zone: String,
    /// Shards worked at the same time.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
}

fn main() {
    let args = Args::parse();
    let scheme = args.queue.split("://").next().unwrap_or_default();
    eprintln!(
        "scanfleet-worker: queue backend {scheme:?} (from --queue {:?}) is not available in this build; \
         the in-memory backend serves `scanfleet scan` in-process only",
        args.queue
    );
    let _ = (&args.redis, &args.zone, args.concurrency);
    std::process::exit(2);
}
