#!/usr/bin/env python3
"""Driver of loadtest/fleet_load.sh: the fleet load test.

For each backend given as --backend NAME=QUEUE_URL it runs, in this order:
  1. the plain queue baseline (coordinator example `queue_baseline`): publish N
     small messages, consume + ack them with the fleet's consumer shape;
  2. the fleet: W `scanfleet-worker --concurrency C --synthetic-probes` processes,
     one `scanfleet scan --detach --all-states` of S shards, `scanfleet status
     --json` polled until finished; peak RSS (VmHWM) and CPU of every worker read
     just before they are stopped, /metrics scraped, then SIGTERM;
  3. correctness: every (ip, port) of the scan in Redis exactly once, no failed
     shard, the dead-letter queue empty.
`redis-benchmark -t set,hset` runs before the first and after the last backend.
Prints a table and writes loadtest/out/fleet-load-<time>.{md,json}.

Safety: --synthetic-probes sends no packet at all, and the targets must be in
127.0.0.0/8 anyway (checked). Every wait is bounded; every worker started here
is stopped by PID on exit (and dies with this process through PDEATHSIG).
"""
import argparse
import ctypes
import datetime
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
WORKERS = {}  # pid -> Popen, every worker alive now
SCANS = []  # scan ids whose Redis keys are still to delete
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def die(msg):
    sys.exit(f"fleet_load: {msg}")


def log(msg):
    print(f"fleet_load: {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout, env=None, check=True):
    """Run a command with a time bound; return CompletedProcess (text)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        die(f"timed out after {timeout} s: {' '.join(cmd)}")
    if check and p.returncode != 0:
        die(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


# ---------------------------------------------------------------- /proc readers

def cpu_secs(pid):
    """utime + stime of a process (not its children), seconds; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def mem_kib(pid):
    """(VmHWM, VmRSS) in KiB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out.get("VmHWM", 0), out.get("VmRSS", 0)


def machine_cpu():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    total = sum(vals[:8])
    return total - idle, total


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pids_named(name):
    """PIDs whose command (comm) is `name`: read-only, for CPU accounting."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == name:
                        out.append(int(d))
            except OSError:
                pass
    return out


class CpuWindow:
    """CPU seconds used by groups of processes and by the machine over a window."""

    def __init__(self, groups):
        self.groups = groups  # name -> [pid]
        self.start = {n: sum(cpu_secs(p) or 0 for p in ps) for n, ps in groups.items()}
        self.m0 = machine_cpu()
        self.t0 = time.monotonic()

    def stop(self):
        busy, total = machine_cpu()
        wall = time.monotonic() - self.t0
        used = {n: sum(cpu_secs(p) or 0 for p in ps) - self.start[n] for n, ps in self.groups.items()}
        machine = (busy - self.m0[0]) / CLK_TCK
        return {"wall_s": wall, "machine_busy_cpu_s": machine,
                "machine_busy_pct_of_2_cores": 100 * (busy - self.m0[0]) / max(1, total - self.m0[1]) ,
                "by_group_cpu_s": used}


# ---------------------------------------------------------------- redis

def redis_cli(*args, timeout=60):
    return run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args], timeout).stdout


def redis_benchmark(dbnum):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-q", "-n", "100000", "-P", "16",
           "-t", "set,hset", "--dbnum", str(dbnum)]
    out = run(cmd, 300).stdout
    rates = {}
    for line in out.replace("\r", "\n").splitlines():
        m = re.match(r"^\s*(\w+): ([\d.]+) requests per second", line)
        if m:
            rates[m.group(1).upper()] = float(m.group(2))
    # The benchmark's own keys, in a database the fleet does not use.
    redis_cli("-n", str(dbnum), "DEL", "key:__rand_int__", "myhash")
    if "HSET" not in rates or "SET" not in rates:
        die(f"could not read redis-benchmark output: {out!r}")
    return {"cmd": " ".join(cmd), "SET": rates["SET"], "HSET": rates["HSET"]}


def scan_keys(scan_id):
    base = f"scanfleet:{{{scan_id}}}"
    return [f"{base}:meta", f"{base}:results", f"{base}:shards", f"{base}:stream"]


# ---------------------------------------------------------------- workers

def pdeathsig():
    # Workers die with this process, whatever kills it.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_workers(a, backend, url, env, pidfile):
    procs = []
    for i in range(a.workers):
        logf = open(os.path.join(a.out, f"worker-{backend}-{i}.log"), "w")
        cmd = [os.path.join(a.bin_dir, "scanfleet-worker"), "--queue", url, "--redis", a.redis,
               "--concurrency", str(a.concurrency), "--synthetic-probes",
               "--metrics-addr", "127.0.0.1:0", "--grace-secs", "10"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=logf, env=env, preexec_fn=pdeathsig)
        logf.close()
        WORKERS[p.pid] = p
        procs.append(p)
        with open(pidfile, "a") as f:
            f.write(f"{p.pid}\n")
    # Ready when each has logged its metrics address and "worker started".
    deadline = time.monotonic() + 60
    addrs = {}
    while time.monotonic() < deadline and len(addrs) < len(procs):
        for i, p in enumerate(procs):
            if p.poll() is not None:
                die(f"worker {i} ({backend}) exited {p.returncode} at start; see {a.out}/worker-{backend}-{i}.log")
            text = ANSI.sub("", open(os.path.join(a.out, f"worker-{backend}-{i}.log")).read())
            m = re.search(r"serving /metrics\s+bound=(\S+)", text)
            if m and "worker started" in text:
                addrs[p.pid] = m.group(1)
        time.sleep(0.1)
    if len(addrs) < len(procs):
        die(f"{backend}: workers not ready within 60 s; see {a.out}/worker-{backend}-*.log")
    return procs, addrs


def scrape(addr):
    """Sum of each metric series without labels, and the labelled ones by label text."""
    try:
        text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    except OSError as e:
        return {"error": str(e)}
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def stop_workers(procs, grace):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(f"killed({p.wait()})")
        WORKERS.pop(p.pid, None)
    return codes


def kill_all_workers():
    for pid, p in list(WORKERS.items()):
        if p.poll() is None:
            p.kill()
            p.wait()
        WORKERS.pop(pid, None)


# ---------------------------------------------------------------- one backend

def baseline(a, backend, url, messages, env):
    # A queue of its own: on RabbitMQ the example's `sfbase-<pid>` prefix, on SQS a suffix.
    if url.startswith("sqs://"):
        url += a.baseline_queue_suffix
    cmd = [os.path.join(a.bin_dir, "examples", "queue_baseline"), "--queue", url,
           "--messages", str(messages), "--consumers", str(a.workers),
           "--per-consumer", str(a.concurrency), "--bytes", str(a.baseline_bytes),
           "--timeout-secs", str(a.timeout)]
    log(f"{backend}: queue baseline: {messages} messages")
    p = run(cmd, a.timeout * 2 + 60, env=env, check=False)
    if p.returncode != 0:
        die(f"{backend}: queue_baseline exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1]) | {"cmd": " ".join(cmd)}


def fleet(a, backend, url, env, pidfile, broker_pids):
    sf = os.path.join(a.bin_dir, "scanfleet")
    run([sf, "queues", "init", "--queue", url], 120, env=env)
    procs, addrs = start_workers(a, backend, url, env, pidfile)
    log(f"{backend}: {len(procs)} workers ready: pids {' '.join(str(p.pid) for p in procs)}")
    groups = {"workers": [p.pid for p in procs], "redis-server": a.redis_pids, "broker": broker_pids}
    window = CpuWindow(groups)
    scan_cmd = [sf, "scan", "--target", a.target, "-p", a.ports, "--no-ping", "--all-states",
                "--queue", url, "--redis", a.redis, "--detach", "--shard-size", str(a.shard_size),
                "--progress", "never"]
    t_pub0 = time.time()
    p = run(scan_cmd, 300, env=env)
    t_pub1 = time.time()
    scan_id = p.stdout.strip().splitlines()[-1]
    SCANS.append(scan_id)
    created_ms = int(redis_cli("HGET", scan_keys(scan_id)[0], "created").strip())
    log(f"{backend}: scan {scan_id} published in {t_pub1 - t_pub0:.2f} s (process included)")
    deadline = time.monotonic() + a.timeout
    status, samples, prev_poll = None, [], None
    while True:
        t_before = time.time()
        s = run([sf, "status", scan_id, "--json", "--redis", a.redis], 60, env=env)
        t_after = time.time()
        status = json.loads(s.stdout)
        pr = status["progress"]
        samples.append((round(t_after - created_ms / 1000, 3), pr["shards_done"], pr["results"]))
        if status["finished"]:
            break
        prev_poll = t_before
        if time.monotonic() > deadline:
            stop_workers(procs, 5)
            die(f"{backend}: scan {scan_id} not finished within {a.timeout} s: {pr}")
        time.sleep(a.poll)
    t_end = t_after
    cpu = window.stop()
    # Memory and CPU of each worker just before it is stopped, and its metrics.
    per_worker = []
    for p in procs:
        hwm, rss = mem_kib(p.pid)
        m = scrape(addrs[p.pid])
        per_worker.append({
            "pid": p.pid, "vm_hwm_kib": hwm, "vm_rss_kib": rss, "cpu_s": cpu_secs(p.pid),
            "jobs_received": m.get("scanfleet_jobs_received_total"),
            "jobs_done": m.get('scanfleet_jobs_completed_total{outcome="done"}'),
            "jobs_retried": m.get('scanfleet_jobs_completed_total{outcome="retried"}'),
            "jobs_released": m.get('scanfleet_jobs_completed_total{outcome="released"}'),
            "jobs_dead_lettered": m.get('scanfleet_jobs_completed_total{outcome="dead_lettered"}'),
            "results_written": m.get("scanfleet_results_written_total"),
            "lease_extensions": m.get("scanfleet_lease_extensions_total"),
            "errors": sum(v for k, v in m.items() if k.startswith("scanfleet_errors_total")),
            "job_seconds_sum": m.get("scanfleet_job_duration_seconds_sum"),
        })
    codes = stop_workers(procs, 25)
    warns = []
    for i in range(len(procs)):
        for line in open(os.path.join(a.out, f"worker-{backend}-{i}.log")):
            clean = ANSI.sub("", line)
            if (" WARN " in clean or " ERROR " in clean) and "LOAD TEST MODE" not in clean:
                warns.append(f"worker {i}: {clean.strip()}")

    # Correctness.
    progress = status["progress"]
    # Every address of the block, as scanfleet expands it (like nmap: .0 and .255 too).
    targets = list(ipaddress.ip_network(a.target, strict=False))
    ports = expand_ports(a.ports)
    expected = len(targets) * len(ports)
    res_path = os.path.join(a.out, f"results-{backend}.jsonl")
    t0 = time.monotonic()
    run([sf, "results", scan_id, "--redis", a.redis, "--format", "jsonl", "--all-states", "-o", res_path], 600, env=env)
    read_s = time.monotonic() - t0
    seen, dup, bad_reason, open_ports = set(), 0, 0, 0
    with open(res_path) as f:
        for line in f:
            r = json.loads(line)
            k = (r["ip"], r["port"])
            dup += k in seen
            seen.add(k)
            bad_reason += r.get("reason") != "synthetic" or r.get("scan_id") != scan_id
            open_ports += r.get("state") == "open"
    want = {(str(ip), port) for ip in targets for port in ports}
    missing, extra = len(want - seen), len(seen - want)
    dl = run([sf, "queues", "dead-letters", "--queue", url], 120, env=env).stdout.strip()
    stream_n = stream_total(scan_keys(scan_id)[3])
    last = redis_cli("XREVRANGE", scan_keys(scan_id)[3], "+", "-", "COUNT", "1").split("\n", 1)[0]
    last_write_s = int(last.split("-")[0]) / 1000 - created_ms / 1000 if re.match(r"^\d+-\d+$", last) else None
    os.remove(res_path)  # tens of MB; the counts above are what matters
    correct = (progress["results"] == expected and len(seen) == expected and dup == 0 and missing == 0
               and extra == 0 and bad_reason == 0 and progress["shards_failed"] == 0
               and progress["shards_done"] == progress["shards_total"] and dl == "")
    redis_cli("DEL", *scan_keys(scan_id))
    SCANS.remove(scan_id)

    secs = t_end - created_ms / 1000
    return {
        "scan_id": scan_id, "scan_cmd": " ".join(scan_cmd), "publish_wall_s": t_pub1 - t_pub0,
        "shards": progress["shards_total"], "results": progress["results"], "targets": len(targets),
        "ports": len(ports), "expected_results": expected, "seconds": secs,
        "seconds_resolution": (t_end - prev_poll) if prev_poll else None,
        "seconds_to_last_write": last_write_s,
        "shards_per_s": progress["shards_total"] / secs, "results_per_s": progress["results"] / secs,
        "workers": per_worker, "worker_exit_codes": codes, "worker_warnings": warns[:20],
        "worker_warning_count": len(warns), "cpu_window": cpu, "samples": samples,
        "check": {"correct": correct, "distinct_ip_port": len(seen), "duplicates_in_report": dup,
                  "missing": missing, "extra": extra, "not_synthetic_or_wrong_scan": bad_reason,
                  "open": open_ports, "shards_failed": progress["shards_failed"],
                  "dead_letters": dl.splitlines() if dl else [], "results_read_s": read_s,
                  "stream_results_sum": stream_n},
    }


def stream_total(key):
    """Sum of `n` over the scan's stream entries: above the result count means
    some results were written twice (a redelivered shard); the stream is capped,
    so below it means trimmed."""
    lines = redis_cli("XRANGE", key, "-", "+").splitlines()
    total = 0
    for i, line in enumerate(lines[:-1]):
        if line == "n" and lines[i + 1].isdigit():
            total += int(lines[i + 1])
    return total


def expand_ports(spec):
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(out))


# ---------------------------------------------------------------- report

def fmt(x, nd=0):
    return "-" if x is None else f"{x:,.{nd}f}"


def report(a, runs, bench, started, ended):
    hset = sum(b["HSET"] for b in bench) / len(bench)
    rows = []
    for name, r in runs.items():
        f, b = r["fleet"], r["baseline"]
        ws = f["workers"]
        rows.append({
            "backend": name, "shards": f["shards"], "results": f["results"], "secs": f["seconds"],
            "shards_s": f["shards_per_s"], "results_s": f["results_per_s"],
            "pub": b["publish_msgs_per_s"], "cons": b["consume_msgs_per_s"],
            "r_shards": f["shards_per_s"] / b["consume_msgs_per_s"], "r_results": f["results_per_s"] / hset,
            "hwm_max": max(w["vm_hwm_kib"] for w in ws) / 1024, "hwm_mean": sum(w["vm_hwm_kib"] for w in ws) / len(ws) / 1024,
            "cpu": [w["cpu_s"] for w in ws], "ok": f["check"]["correct"],
        })
    head = ("| backend | shards | results | time s | shards/s | results/s | baseline publish msgs/s | "
            "baseline consume+ack msgs/s | shards/s ÷ consume msgs/s | results/s ÷ HSET ops/s | "
            "worker peak RSS MiB (max / mean) | worker CPU s (each) | correct |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['shards']} | {r['results']:,} | {r['secs']:.2f} | {r['shards_s']:.1f} | "
            f"{r['results_s']:,.0f} | {r['pub']:,.0f} | {r['cons']:,.0f} | {r['r_shards']:.3f} | "
            f"{r['r_results']:.3f} | {r['hwm_max']:.1f} / {r['hwm_mean']:.1f} | "
            f"{' / '.join(fmt(c, 2) for c in r['cpu'])} | {'yes' if r['ok'] else 'NO'} |")
    md = [f"# Fleet load test, {started}", "",
          f"Command: `{a.command}`", "",
          f"Workers: {a.workers} processes x `--concurrency {a.concurrency} --synthetic-probes`; "
          f"targets `{a.target}` x ports `{a.ports}`, `--shard-size {a.shard_size}`; "
          f"load average at start {a.load_start}, at end {loadavg()}; finished {ended}.", "",
          *lines, "",
          "redis-benchmark (`" + bench[0]["cmd"] + "`): " +
          "; ".join(f"run {i + 1}: SET {b['SET']:,.0f} ops/s, HSET {b['HSET']:,.0f} ops/s" for i, b in enumerate(bench)) +
          f"; HSET mean {hset:,.0f} ops/s is the ratio's denominator.", ""]
    for name, r in runs.items():
        f, b = r["fleet"], r["baseline"]
        c, cpu = f["check"], f["cpu_window"]
        g = cpu["by_group_cpu_s"]
        md += [f"## {name}", "",
               f"- scan `{f['scan_cmd']}`: {f['shards']} shards, {f['results']:,} results "
               f"({f['targets']} targets x {f['ports']} ports = {f['expected_results']:,} expected) in {f['seconds']:.2f} s "
               f"from `begin_scan` (just before the first publish) to the first `status` that said finished "
               f"(poll every {a.poll} s; the last unfinished poll started {fmt(f['seconds_resolution'], 2)} s before; the last "
               f"result batch reached Redis at {fmt(f['seconds_to_last_write'], 2)} s, a lower bound); "
               f"`scan --detach` itself took {f['publish_wall_s']:.2f} s (process start, connect, declare, publish).",
               f"- baseline `{b['cmd']}`: publish {b['publish_msgs_per_s']:,.0f} msgs/s ({b['publish_secs']:.2f} s), "
               f"consume+ack {b['consume_msgs_per_s']:,.0f} msgs/s ({b['consume_secs']:.2f} s), "
               f"{b['duplicates']} duplicate(s), {b['errors']} error(s).",
               f"- CPU during the scan ({cpu['wall_s']:.1f} s wall, 2 cores = {2 * cpu['wall_s']:.1f} CPU s): machine busy "
               f"{cpu['machine_busy_cpu_s']:.1f} CPU s ({cpu['machine_busy_pct_of_2_cores']:.0f} %); workers {g['workers']:.1f}, "
               f"redis-server {g['redis-server']:.1f}, broker ({'beam.smp' if name == 'rabbitmq' else 'moto_server'}) "
               f"{g['broker']:.1f}; the rest (coordinator/status polls, other users of the machine) "
               f"{cpu['machine_busy_cpu_s'] - sum(g.values()):.1f}.",
               "- workers: " + "; ".join(
                   f"pid {w['pid']}: VmHWM {w['vm_hwm_kib'] / 1024:.1f} MiB, VmRSS {w['vm_rss_kib'] / 1024:.1f} MiB, "
                   f"CPU {fmt(w['cpu_s'], 2)} s, jobs received {fmt(w['jobs_received'])} / done {fmt(w['jobs_done'])} / "
                   f"retried {fmt(w['jobs_retried'])} / released {fmt(w['jobs_released'])}, results {fmt(w['results_written'])}, "
                   f"lease extensions {fmt(w['lease_extensions'])}, errors {fmt(w['errors'])}" for w in f["workers"]) +
               f"; exit codes after SIGTERM: {f['worker_exit_codes']}.",
               f"- check: {'PASS' if c['correct'] else 'FAIL'}: {c['distinct_ip_port']:,} distinct (ip, port) in "
               f"`scanfleet results --all-states` ({c['missing']} missing, {c['extra']} extra, {c['duplicates_in_report']} "
               f"duplicates, {c['not_synthetic_or_wrong_scan']} not synthetic); {c['open']} open; "
               f"shards failed {c['shards_failed']}; dead letters: {len(c['dead_letters'])}; "
               f"stream entries sum to {c['stream_results_sum']:,} results; reading all results back took {c['results_read_s']:.2f} s.",
               f"- worker WARN/ERROR log lines: {f['worker_warning_count']}" +
               ("".join(f"\n  - `{w[:300]}`" for w in f["worker_warnings"][:5])), ""]
    return "\n".join(lines), "\n".join(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", action="append", required=True, help="NAME=QUEUE_URL, repeatable")
    ap.add_argument("--baseline-messages", action="append", default=[], help="NAME=N, repeatable")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--shards", type=int, default=256)
    ap.add_argument("--target", default="127.1.0.0/22")
    ap.add_argument("--ports", default="1-200")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--timeout", type=int, default=600, help="bound on each scan and each baseline phase, s")
    ap.add_argument("--poll", type=float, default=0.2)
    ap.add_argument("--baseline-bytes", type=int, default=512)
    ap.add_argument("--bench-db", type=int, default=13)
    ap.add_argument("--baseline-queue-suffix", default="-base", help="appended to an sqs://NAME for the baseline")
    ap.add_argument("--moto-pid", type=int)
    ap.add_argument("--out", default="loadtest/out")
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--command", default="loadtest/fleet_load.sh")
    a = ap.parse_args()

    net = ipaddress.ip_network(a.target, strict=False)
    if not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):
        die(f"--target {a.target}: the load test only uses 127.0.0.0/8")
    if not os.environ.get("SCANFLEET_JOB_SECRET"):
        die("SCANFLEET_JOB_SECRET is not set")
    n_targets = net.num_addresses
    a.shard_size = max(1, -(-n_targets // a.shards))
    os.makedirs(a.out, exist_ok=True)
    info = redis_cli("INFO", "server")
    a.redis_pids = [int(re.search(r"process_id:(\d+)", info).group(1))]
    a.load_start = loadavg()
    msgs = dict(x.split("=", 1) for x in a.baseline_messages)
    env = dict(os.environ, NO_COLOR="1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("fleet_load: terminated"))

    started = datetime.datetime.now().isoformat(timespec="seconds")
    runs = {}
    try:
        if run(["redis-cli", "-n", str(a.bench_db), "DBSIZE"], 30).stdout.strip() != "0":
            die(f"Redis database {a.bench_db} is not empty: choose another --bench-db for redis-benchmark")
        bench = [redis_benchmark(a.bench_db)]
        log(f"redis-benchmark: SET {bench[0]['SET']:,.0f}/s HSET {bench[0]['HSET']:,.0f}/s")
        for spec in a.backend:
            name, url = spec.split("=", 1)
            broker = pids_named("beam.smp") if name == "rabbitmq" else ([a.moto_pid] if a.moto_pid else [])
            b = baseline(a, name, url, int(msgs.get(name, 5000)), env)
            log(f"{name}: baseline publish {b['publish_msgs_per_s']:,.0f}/s consume+ack {b['consume_msgs_per_s']:,.0f}/s")
            f = fleet(a, name, url, env, a.pidfile, broker)
            log(f"{name}: {f['shards']} shards, {f['results']:,} results in {f['seconds']:.2f} s; "
                f"check {'PASS' if f['check']['correct'] else 'FAIL'}")
            runs[name] = {"baseline": b, "fleet": f}
        bench.append(redis_benchmark(a.bench_db))
    finally:
        kill_all_workers()
        for scan_id in SCANS:
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "DEL", *scan_keys(scan_id)],
                           capture_output=True, timeout=60)
    ended = datetime.datetime.now().isoformat(timespec="seconds")
    table, md = report(a, runs, bench, started, ended)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(a.out, f"fleet-load-{stamp}.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(a.out, f"fleet-load-{stamp}.json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(a).items()}, "redis_benchmark": bench, "runs": runs}, f, indent=1)
    print(table)
    print(f"\nreport: {a.out}/fleet-load-{stamp}.md")
    if not all(r["fleet"]["check"]["correct"] for r in runs.values()):
        sys.exit("fleet_load: correctness check FAILED (see the report)")


if __name__ == "__main__":
    main()
