#!/usr/bin/env python3
"""Driver of loadtest/fleet_load.sh: the fleet load test.

For each backend given as --backend NAME=QUEUE_URL it runs, in this order:
  1. the plain queue baseline (coordinator example `queue_baseline`), R times:
     publish N small messages, consume + ack them with the fleet's consumer shape
     (W connections x C loops);
  2. the fleet: W `scanfleet-worker --concurrency C --synthetic-probes` processes,
     then R scans through them, one after the other: `scanfleet scan --detach
     --all-states` of S shards, `scanfleet status --json` polled until finished,
     CPU of workers, Redis, the broker and the rest of the machine over the scan;
  3. correctness of each scan: the fields of the results hash in Redis are
     exactly targets x ports, no failed shard; the first scan is also read back
     through `scanfleet results` (every record once, synthetic, of this scan);
  4. peak RSS (VmHWM) and CPU of every worker read just before they are stopped,
     /metrics scraped (redeliveries, retries, errors), SIGTERM, exit codes; the
     dead-letter queue must be empty.
The table shows the median of the R scans and of the R baselines.
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
import resource
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


def listener_pids(port):
    """PIDs listening on 127.0.0.1:port or *:port (the broker): read-only, for CPU accounting."""
    out = run(["ss", "-Hltnp", f"sport = :{port}"], 30, check=False).stdout
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out)})


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def redis_memory():
    """Redis used_memory in bytes (shared server: other users' keys move it a little)."""
    m = re.search(r"used_memory:(\d+)", redis_cli("INFO", "memory"))
    return int(m.group(1)) if m else 0


def evalsha_stats():
    """(calls, usec) of EVALSHA in Redis so far: the workers' writes are Lua scripts."""
    out = redis_cli("INFO", "commandstats")
    m = re.search(r"cmdstat_evalsha:calls=(\d+),usec=(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class CpuWindow:
    """CPU seconds used by groups of processes and by the machine over a window."""

    def __init__(self, groups):
        self.groups = groups  # name -> [pid]
        self.start = {n: sum(cpu_secs(p) or 0 for p in ps) for n, ps in groups.items()}
        self.children0 = children_cpu()
        self.evalsha0 = evalsha_stats()
        self.m0 = machine_cpu()
        self.t0 = time.monotonic()

    def stop(self):
        busy, total = machine_cpu()
        wall = time.monotonic() - self.t0
        used = {n: sum(cpu_secs(p) or 0 for p in ps) - self.start[n] for n, ps in self.groups.items()}
        # The `scan` and `status` processes this driver ran and reaped (workers are reaped later).
        used["scanfleet CLI"] = children_cpu() - self.children0
        calls, usec = (x - y for x, y in zip(evalsha_stats(), self.evalsha0))
        machine = (busy - self.m0[0]) / CLK_TCK
        return {"wall_s": wall, "machine_busy_cpu_s": machine,
                "machine_busy_pct_of_2_cores": 100 * (busy - self.m0[0]) / max(1, total - self.m0[1]),
                "by_group_cpu_s": used, "redis_evalsha_calls": calls, "redis_evalsha_s": usec / 1e6}


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
    """Every series of a worker's /metrics, keyed by name with its labels, as a float."""
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
    """queue_baseline, --repeat times on fresh queues; the median of each phase."""
    runs = []
    for rep in range(a.repeat):
        # Queues of its own: on RabbitMQ the example's `sfbase-<pid>` prefix, on SQS a suffix.
        u = f"{url}{a.baseline_queue_suffix}{rep}" if url.startswith("sqs://") else url
        cmd = [os.path.join(a.bin_dir, "examples", "queue_baseline"), "--queue", u,
               "--messages", str(messages), "--consumers", str(a.workers),
               "--per-consumer", str(a.concurrency), "--bytes", str(a.baseline_bytes),
               "--timeout-secs", str(a.timeout)]
        p = run(cmd, a.timeout * 2 + 60, env=env, check=False)
        if p.returncode != 0:
            die(f"{backend}: queue_baseline exited {p.returncode}: {p.stderr.strip()[-2000:]}")
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]) | {"cmd": " ".join(cmd)})
        log(f"{backend}: baseline {rep + 1}/{a.repeat}: {messages} messages: publish "
            f"{runs[-1]['publish_msgs_per_s']:,.0f}/s, consume+ack {runs[-1]['consume_msgs_per_s']:,.0f}/s")
    return {"runs": runs, "cmd": runs[0]["cmd"], "messages": messages,
            "publish_msgs_per_s": median([r["publish_msgs_per_s"] for r in runs]),
            "consume_msgs_per_s": median([r["consume_msgs_per_s"] for r in runs]),
            "duplicates": sum(r["duplicates"] for r in runs), "errors": sum(r["errors"] for r in runs)}


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def one_scan(a, backend, url, env, rep, groups, read_back):
    """Publish one scan, follow it to the end, check it, delete its keys."""
    sf = os.path.join(a.bin_dir, "scanfleet")
    window = CpuWindow(groups)
    scan_cmd = [sf, "scan", "--target", a.target, "-p", a.ports, "--no-ping", "--all-states",
                "--queue", url, "--redis", a.redis, "--detach", "--shard-size", str(a.shard_size),
                "--progress", "never"]
    mem0 = redis_memory()
    t_pub0 = time.time()
    p = run(scan_cmd, 300, env=env)
    t_pub1 = time.time()
    scan_id = p.stdout.strip().splitlines()[-1]
    SCANS.append(scan_id)
    keys = scan_keys(scan_id)
    created_ms = int(redis_cli("HGET", keys[0], "created").strip())
    deadline = time.monotonic() + a.timeout
    samples, prev_poll = [], None
    while True:
        t_before = time.time()
        out = run([sf, "status", scan_id, "--json", "--redis", a.redis], 60, env=env).stdout
        t_after = time.time()
        status = json.loads(out)
        pr = status["progress"]
        samples.append((round(t_after - created_ms / 1000, 3), pr["shards_done"], pr["results"]))
        if status["finished"]:
            break
        prev_poll = t_before
        if time.monotonic() > deadline:
            die(f"{backend}: scan {scan_id} not finished within {a.timeout} s: {pr}")
        time.sleep(a.poll)
    cpu = window.stop()
    mem_delta = redis_memory() - mem0
    secs = t_after - created_ms / 1000
    last = redis_cli("XREVRANGE", keys[3], "+", "-", "COUNT", "1").split("\n", 1)[0]
    last_write = int(last.split("-")[0]) / 1000 - created_ms / 1000 if re.match(r"^\d+-\d+$", last) else None

    # Correctness: the fields of the results hash are exactly targets x ports.
    expected = {f"{ip}|{port}|tcp" for ip in a.target_ips for port in a.port_list}
    fields = redis_cli("HKEYS", keys[1], timeout=300).splitlines()
    got = set(fields)
    check = {"hkeys": len(fields), "distinct": len(got), "missing": len(expected - got),
             "extra": len(got - expected), "shards_failed": pr["shards_failed"]}
    check["ok"] = (pr["results"] == len(expected) and len(fields) == len(got) == len(expected)
                   and not check["missing"] and not check["extra"] and pr["shards_failed"] == 0
                   and pr["shards_done"] == pr["shards_total"])
    if read_back:
        # The coordinator's read path too, once: every record a synthetic result of this scan.
        path = os.path.join(a.out, f"results-{backend}.jsonl")
        t0 = time.monotonic()
        # To stdout, not `-o FILE`: `-o` writes unbuffered (a write(2) per JSON token), 7x slower.
        with open(path, "w") as out:
            p = subprocess.run([sf, "results", scan_id, "--redis", a.redis, "--format", "jsonl", "--all-states"],
                               stdout=out, stderr=subprocess.PIPE, text=True, timeout=a.timeout, env=env)
        if p.returncode != 0:
            die(f"scanfleet results {scan_id} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
        check["read_back_s"] = time.monotonic() - t0
        seen, dup, bad, n_open = set(), 0, 0, 0
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                k = f"{r['ip']}|{r['port']}|tcp"
                dup += k in seen
                seen.add(k)
                bad += r.get("reason") != "synthetic" or r.get("scan_id") != scan_id
                n_open += r.get("state") == "open"
        os.remove(path)  # tens of MB; the counts are what matters
        check |= {"read_back_records": len(seen) + dup, "read_back_duplicates": dup,
                  "read_back_not_synthetic": bad, "open": n_open}
        check["ok"] = check["ok"] and seen == expected and dup == 0 and bad == 0
    redis_cli("DEL", *keys)
    SCANS.remove(scan_id)
    log(f"{backend}: scan {rep + 1}/{a.repeat} {scan_id}: {pr['shards_total']} shards, {pr['results']:,} results "
        f"in {secs:.2f} s; check {'PASS' if check['ok'] else 'FAIL'}")
    return {
        "scan_id": scan_id, "scan_cmd": " ".join(scan_cmd), "publish_wall_s": t_pub1 - t_pub0,
        "shards": pr["shards_total"], "results": pr["results"], "seconds": secs,
        "seconds_resolution": (t_after - prev_poll) if prev_poll else None, "seconds_to_last_write": last_write,
        "shards_per_s": pr["shards_total"] / secs, "results_per_s": pr["results"] / secs,
        "cpu_window": cpu, "samples": samples, "check": check, "redis_memory_delta_bytes": mem_delta,
    }


def fleet(a, backend, url, env, pidfile, broker_pids):
    """W workers, R scans through them, then their memory, CPU and metrics."""
    sf = os.path.join(a.bin_dir, "scanfleet")
    run([sf, "queues", "init", "--queue", url], 120, env=env)
    procs, addrs = start_workers(a, backend, url, env, pidfile)
    log(f"{backend}: {len(procs)} workers ready: pids {' '.join(str(p.pid) for p in procs)}")
    groups = {"workers": [p.pid for p in procs], "redis-server": a.redis_pids, "broker": broker_pids}
    scans = [one_scan(a, backend, url, env, rep, groups, rep == 0) for rep in range(a.repeat)]
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
            "job_seconds_count": m.get("scanfleet_job_duration_seconds_count"),
        })
    codes = stop_workers(procs, 25)
    warns = []
    for i in range(len(procs)):
        for line in open(os.path.join(a.out, f"worker-{backend}-{i}.log")):
            clean = ANSI.sub("", line)
            if (" WARN " in clean or " ERROR " in clean) and "LOAD TEST MODE" not in clean:
                warns.append(f"worker {i}: {clean.strip()}")
    dl = run([sf, "queues", "dead-letters", "--queue", url], 120, env=env).stdout.strip()
    mid = median([s["seconds"] for s in scans])
    received = int(sum(w["jobs_received"] or 0 for w in per_worker))
    return {
        "scans": scans, "median_seconds": mid, "shards": scans[0]["shards"], "results": scans[0]["results"],
        "shards_per_s": scans[0]["shards"] / mid, "results_per_s": scans[0]["results"] / mid,
        "jobs_received": received, "redeliveries": received - sum(s["shards"] for s in scans),
        "workers": per_worker, "worker_exit_codes": codes, "worker_warnings": warns[:20],
        "worker_warning_count": len(warns), "dead_letters": dl.splitlines() if dl else [],
        "correct": all(s["check"]["ok"] for s in scans) and not dl,
    }


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
    head = ("| backend | shards | results | time s (median of {r}) | shards/s | results/s | baseline publish msgs/s | "
            "baseline consume+ack msgs/s | shards/s ÷ consume msgs/s | results/s ÷ HSET ops/s | "
            "worker peak RSS MiB (max / mean) | worker CPU s (each, all scans) | correct |").format(r=a.repeat)
    lines = [head, "|" + "---|" * 13]
    for name, r in runs.items():
        f, b = r["fleet"], r["baseline"]
        ws = f["workers"]
        lines.append(
            f"| {name} | {f['shards']} | {f['results']:,} | {f['median_seconds']:.2f} | {f['shards_per_s']:.1f} | "
            f"{f['results_per_s']:,.0f} | {b['publish_msgs_per_s']:,.0f} | {b['consume_msgs_per_s']:,.0f} | "
            f"{f['shards_per_s'] / b['consume_msgs_per_s']:.3f} | {f['results_per_s'] / hset:.3f} | "
            f"{max(w['vm_hwm_kib'] for w in ws) / 1024:.1f} / {sum(w['vm_hwm_kib'] for w in ws) / len(ws) / 1024:.1f} | "
            f"{' / '.join(fmt(w['cpu_s'], 2) for w in ws)} | {'yes' if f['correct'] else 'NO'} |")
    md = [f"# Fleet load test, {started}", "",
          f"Command: `{a.command}`", "",
          f"Workers: {a.workers} processes x `--concurrency {a.concurrency} --synthetic-probes`; "
          f"targets `{a.target}` ({len(a.target_ips)} addresses) x ports `{a.ports}`, `--shard-size {a.shard_size}`; "
          f"{a.repeat} scan(s) per backend through the same workers; "
          f"load average at start {a.load_start}, at end {loadavg()}; finished {ended}.", "",
          *lines, "",
          "redis-benchmark (`" + bench[0]["cmd"] + "`): " +
          "; ".join(f"{w}: SET {b['SET']:,.0f} ops/s, HSET {b['HSET']:,.0f} ops/s"
                    for w, b in zip(("before", "after"), bench)) +
          f"; the mean HSET, {hset:,.0f} ops/s, is the ratio's denominator.", ""]
    for name, r in runs.items():
        f, b = r["fleet"], r["baseline"]
        md += [f"## {name}", "",
               f"- scan command: `{f['scans'][0]['scan_cmd']}`",
               f"- baseline `{b['cmd']}` ({a.repeat} runs, each on fresh queues): publish "
               + ", ".join(f"{r['publish_msgs_per_s']:,.0f}" for r in b["runs"]) + " msgs/s (median "
               f"{b['publish_msgs_per_s']:,.0f}); consume+ack " + ", ".join(f"{r['consume_msgs_per_s']:,.0f}" for r in b["runs"])
               + f" msgs/s (median {b['consume_msgs_per_s']:,.0f}); {b['duplicates']} duplicate(s), {b['errors']} error(s)."]
        for i, sc in enumerate(f["scans"]):
            c, cpu = sc["check"], sc["cpu_window"]
            g = cpu["by_group_cpu_s"]
            rb = (f" Read back with `scanfleet results --format jsonl --all-states`: {c['read_back_records']:,} records in "
                  f"{c['read_back_s']:.2f} s ({c['read_back_records'] / c['read_back_s']:,.0f}/s, to stdout), "
                  f"{c['read_back_duplicates']} duplicates, {c['read_back_not_synthetic']} not synthetic, {c['open']} open."
                  if "read_back_s" in c else "")
            md.append(
                f"- scan {i + 1}: {sc['shards']} shards, {sc['results']:,} results in {sc['seconds']:.2f} s "
                f"({sc['shards_per_s']:.1f} shards/s, {sc['results_per_s']:,.0f} results/s), from `begin_scan` (just "
                f"before the first publish) to the first `status` that said finished; the last unfinished poll started "
                f"{fmt(sc['seconds_resolution'], 2)} s earlier and the last result batch reached Redis at "
                f"{fmt(sc['seconds_to_last_write'], 2)} s. `scan --detach` took {sc['publish_wall_s']:.2f} s. "
                f"CPU over the scan ({cpu['wall_s']:.2f} s wall, {2 * cpu['wall_s']:.2f} CPU s on 2 cores): machine busy "
                f"{cpu['machine_busy_cpu_s']:.2f} ({cpu['machine_busy_pct_of_2_cores']:.0f} %): workers {g['workers']:.2f}, "
                f"redis-server {g['redis-server']:.2f} (EVALSHA: {cpu['redis_evalsha_s']:.2f} s by its own command timer, in "
                f"{cpu['redis_evalsha_calls']:,} calls), {'beam.smp' if name == 'rabbitmq' else 'moto_server'} "
                f"{g['broker']:.2f}, `scanfleet scan`/`status` {g['scanfleet CLI']:.2f}, the rest (other users of the "
                f"machine) {cpu['machine_busy_cpu_s'] - sum(g.values()):.2f}. Redis used_memory grew by "
                f"{sc['redis_memory_delta_bytes'] / 2**20:,.0f} MiB ({sc['redis_memory_delta_bytes'] / max(1, sc['results']):.0f} B "
                f"per result). "
                f"Check {'PASS' if c['ok'] else 'FAIL'}: {c['distinct']:,} distinct result fields in Redis "
                f"({c['missing']} missing, {c['extra']} extra), {c['shards_failed']} failed shards." + rb)
        md += ["- workers: " + "; ".join(
                   f"pid {w['pid']}: VmHWM {w['vm_hwm_kib'] / 1024:.1f} MiB, VmRSS {w['vm_rss_kib'] / 1024:.1f} MiB, "
                   f"CPU {fmt(w['cpu_s'], 2)} s, jobs received {fmt(w['jobs_received'])} / done {fmt(w['jobs_done'])} / "
                   f"retried {fmt(w['jobs_retried'])} / released {fmt(w['jobs_released'])}, results "
                   f"{fmt(w['results_written'])}, mean job {1000 * (w['job_seconds_sum'] or 0) / max(1, w['job_seconds_count'] or 0):.1f} ms, "
                   f"lease extensions {fmt(w['lease_extensions'])}, errors {fmt(w['errors'])}" for w in f["workers"]) +
               f"; exit codes after SIGTERM: {f['worker_exit_codes']}. Jobs received by all workers: {f['jobs_received']} "
               f"for {a.repeat} x {f['shards']} shards ({f['redeliveries']} redeliveries).",
               f"- dead-letter queue after the scans: {len(f['dead_letters'])} message(s); worker WARN/ERROR log lines: "
               f"{f['worker_warning_count']}" + "".join(f"\n  - `{w[:300]}`" for w in f["worker_warnings"][:5]), ""]
    return "\n".join(lines), "\n".join(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", action="append", required=True, help="NAME=QUEUE_URL, repeatable")
    ap.add_argument("--baseline-messages", action="append", default=[], help="NAME=N, repeatable")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--shards", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="scans per backend; the table shows the median")
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
    # Every address of the block, as scanfleet expands it (like nmap: .0 and .255 too).
    a.target_ips = [str(ip) for ip in net]
    a.port_list = expand_ports(a.ports)
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
            broker = listener_pids(5672) if name == "rabbitmq" else ([a.moto_pid] if a.moto_pid else [])
            b = baseline(a, name, url, int(msgs.get(name, 5000)), env)
            f = fleet(a, name, url, env, a.pidfile, broker)
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
        args = {k: v for k, v in vars(a).items() if k not in ("target_ips", "port_list")}
        json.dump({"args": args, "redis_benchmark": bench, "runs": runs}, f, indent=1)
    print(table)
    print(f"\nreport: {a.out}/fleet-load-{stamp}.md")
    if not all(r["fleet"]["correct"] for r in runs.values()):
        sys.exit("fleet_load: correctness check FAILED (see the report)")


if __name__ == "__main__":
    main()
