"""Autoscaling simulation driver (Python standard library only; run by
loadtest/autoscale_sim.sh with /usr/bin/python3).

Applies the scaling rule of terraform/scaling.tf to the depth of a real SQS queue
(moto) during a real fleet scan, starting and stopping real scanfleet-worker
processes, then runs the same scan on a fixed fleet of max_size workers and
compares drain time and worker-seconds.

The rule, as terraform/scaling.tf states it, evaluated every --interval seconds:

  * in_service = workers started and not yet told to stop (GroupInServiceInstances:
    a worker that got SIGTERM is Terminating:Wait, draining, and no longer counts);
  * visible    = ApproximateNumberOfMessages of the queue (the CloudWatch metric
    ApproximateNumberOfMessagesVisible);
  * in_service == 0 and visible > 0: the step policy "from_zero" sets the capacity
    to scale_from_zero_capacity (target tracking has no value: x / 0);
  * in_service == 0 and visible == 0: no data, no action;
  * otherwise target tracking on backlog_per_instance = visible / in_service:
    desired = ceil(in_service * metric / target) = ceil(visible / target);
  * desired is clamped to [min_size, max_size]; a scale-out waits
    scale_out_cooldown after the last scale-out, a scale-in waits
    scale_in_cooldown after the last scaling activity; scale-in sends SIGTERM
    to the newest workers (they finish or release their shard and exit, as on the
    lifecycle hook).
"""

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

PROCS = []  # every worker Popen this process started


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- terraform


def terraform_defaults(tf_dir):
    """Read the rule's parameters from the module's own files, and check that
    scaling.tf still is the rule this simulation implements."""
    variables = open(os.path.join(tf_dir, "variables.tf")).read()
    scaling = open(os.path.join(tf_dir, "scaling.tf")).read()

    def var_default(name):
        m = re.search(r'variable\s+"%s"\s*\{(.*?)\n\}' % re.escape(name), variables, re.S)
        if not m:
            sys.exit("autoscale_sim: variable %s not found in variables.tf" % name)
        d = re.search(r"^\s*default\s*=\s*([0-9.]+)\s*$", m.group(1), re.M)
        if not d:
            sys.exit("autoscale_sim: variable %s has no numeric default" % name)
        return float(d.group(1))

    def zone_default(attr):
        m = re.search(r"^\s*%s\s*=\s*optional\(number,\s*([0-9.]+)\)" % attr, variables, re.M)
        if not m:
            sys.exit("autoscale_sim: zones.%s has no optional(number, N) default" % attr)
        return int(float(m.group(1)))

    checks = [
        (r"target_value\s*=\s*var\.backlog_per_instance_target", "target_value = var.backlog_per_instance_target"),
        (r'metric_name\s*=\s*"ApproximateNumberOfMessagesVisible"', "ApproximateNumberOfMessagesVisible"),
        (r'metric_name\s*=\s*"GroupInServiceInstances"', "GroupInServiceInstances"),
        (r'expression\s*=\s*"visible / in_service"', 'expression = "visible / in_service"'),
        (r'policy_type\s*=\s*"TargetTrackingScaling"', "TargetTrackingScaling"),
        (r'adjustment_type\s*=\s*"ExactCapacity"', "from_zero ExactCapacity"),
        (r"scaling_adjustment\s*=\s*each\.value\.scale_from_zero_capacity", "scaling_adjustment = scale_from_zero_capacity"),
        (r'IF\(visible > 0 AND FILL\(in_service, 0\) == 0, 1, 0\)', "from-zero alarm expression"),
    ]
    for pattern, what in checks:
        if not re.search(pattern, scaling):
            sys.exit("autoscale_sim: terraform/scaling.tf no longer has %s; the simulation's rule would not be the module's" % what)
    # Cooldown / warmup settings: the module sets none (AWS defaults apply there).
    all_tf = "".join(open(os.path.join(tf_dir, f)).read() for f in os.listdir(tf_dir) if f.endswith(".tf"))
    cooldowns = re.findall(r"^\s*(default_cooldown|estimated_instance_warmup|default_instance_warmup|cooldown|disable_scale_in)\s*=\s*(\S+)", all_tf, re.M)
    return {
        "target": var_default("backlog_per_instance_target"),
        "min_size": zone_default("min_size"),
        "max_size": zone_default("max_size"),
        "from_zero": zone_default("scale_from_zero_capacity"),
        "cooldowns_in_tf": cooldowns,
    }


# ---------------------------------------------------------------- SQS (moto)


class Sqs:
    def __init__(self, endpoint, region):
        self.endpoint = endpoint.rstrip("/") + "/"
        self.auth = ("AWS4-HMAC-SHA256 Credential=testing/20260101/%s/sqs/aws4_request, "
                     "SignedHeaders=host, Signature=0" % region)

    def call(self, params):
        body = urllib.parse.urlencode(dict(params, Version="2012-11-05")).encode()
        req = urllib.request.Request(self.endpoint, data=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Authorization": self.auth})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    def url(self, name):
        xml = self.call({"Action": "GetQueueUrl", "QueueName": name})
        return re.search(r"<QueueUrl>(.*?)</QueueUrl>", xml).group(1)

    def depth(self, url):
        xml = self.call({"Action": "GetQueueAttributes", "QueueUrl": url,
                         "AttributeName.1": "ApproximateNumberOfMessages",
                         "AttributeName.2": "ApproximateNumberOfMessagesNotVisible"})
        attrs = dict(re.findall(r"<Name>(.*?)</Name><Value>(.*?)</Value>", xml))
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


# ---------------------------------------------------------------- workers


class Worker:
    def __init__(self, n, args, t0):
        self.n = n
        self.logf = open(os.path.join(args.work, "worker-%s-%d.log" % (args.kind, n)), "w")
        self.p = subprocess.Popen([os.path.join(args.bin_dir, "scanfleet-worker"), "--queue", args.queue],
                                  stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        PROCS.append(self.p)
        with open(args.pidfile, "a") as f:
            f.write("%d\n" % self.p.pid)
        self.start = time.monotonic()
        self.stop_sent = None
        self.exit = None
        self.rc = None

    def poll(self):
        if self.exit is None and self.p.poll() is not None:
            self.exit = time.monotonic()
            self.rc = self.p.returncode
            self.logf.close()

    def alive(self):
        self.poll()
        return self.exit is None

    def in_service(self):
        return self.alive() and self.stop_sent is None

    def terminate(self):
        if self.stop_sent is None and self.alive():
            self.p.send_signal(signal.SIGTERM)
            self.stop_sent = time.monotonic()


def status(args, sid):
    out = subprocess.run([os.path.join(args.bin_dir, "scanfleet"), "status", sid, "--json"],
                         capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


# ---------------------------------------------------------------- one run


def run(args, sqs, qurl, kind, rule):
    args.kind = kind
    log("")
    log("== %s: %s ==" % (kind, "workers started and stopped by the rule" if kind == "autoscaled"
                          else "%d workers for the whole scan" % rule["max_size"]))
    workers = []
    launches = 0
    vis, inflight = sqs.depth(qurl)
    if vis or inflight:
        sys.exit("autoscale_sim: queue not empty before the %s run (%d visible, %d in flight)" % (kind, vis, inflight))
    if kind == "fixed":
        for _ in range(rule["max_size"]):
            launches += 1
            workers.append(Worker(launches, args, None))
        time.sleep(1.0)  # let them connect; their worker-seconds count from t0 only

    t0 = time.monotonic()
    pub = subprocess.run([os.path.join(args.bin_dir, "scanfleet"), "scan", "--target", args.target,
                          "-p", args.ports, "--mode", "connect", "--no-ping", "--no-service-detection",
                          "--shard-size", str(args.shard_size), "--queue", args.queue, "--detach",
                          "--progress", "never"],
                         capture_output=True, text=True, timeout=120)
    t_pub = time.monotonic() - t0
    if pub.returncode != 0:
        sys.exit("autoscale_sim: scan --detach failed: %s" % pub.stderr.strip())
    sid = pub.stdout.strip().split()[-1]
    with open(args.scanfile, "a") as f:
        f.write(sid + "\n")
    log("scan %s published in %.1f s (%s)" % (sid, t_pub, pub.stderr.strip().splitlines()[-1]))

    hdr = "%6s %8s %9s %10s %8s %7s %11s  %s" % ("t(s)", "backlog", "in_flight", "in_service",
                                                  "draining", "desired", "shards_done", "action")
    log(hdr)
    log("-" * len(hdr))
    rows = []
    last_out = -1e9
    last_any = -1e9
    next_tick = t0
    t_end = None
    peak = 0
    desired = 0
    st = None
    next_end_check = t0
    while True:
        now = time.monotonic()
        t = now - t0
        for w in workers:
            w.poll()
        if t > args.run_timeout:
            log("autoscale_sim: %s run hit its %d s limit" % (kind, args.run_timeout))
            break
        if t_end is None and now >= next_end_check:
            next_end_check = now + 0.5
            st = status(args, sid)
            v, nv = sqs.depth(qurl)
            if st and st.get("finished") and v == 0 and nv == 0:
                t_end = now
                if kind == "fixed":
                    for w in workers:
                        w.terminate()
                log("%6.1f scan finished and queue empty: %s" % (t, json.dumps(st["progress"])))
        if now >= next_tick:
            tick = next_tick  # cooldowns count in scheduled tick time, not in poll jitter
            while next_tick <= now:  # a slow tick skips, never bunches, the next ones
                next_tick += args.interval
            vis, inflight = sqs.depth(qurl)
            if st is None or t_end is None:
                st = status(args, sid) or st
            in_service = [w for w in workers if w.in_service()]
            draining = [w for w in workers if w.alive() and w.stop_sent is not None]
            action = ""
            if kind == "autoscaled":
                n = len(in_service)
                if n == 0:
                    desired = rule["from_zero"] if vis > 0 else 0
                    how = "from-zero step" if vis > 0 else "no data"
                else:
                    desired = math.ceil(vis / rule["target"] - 1e-9)
                    how = "tracking %.1f/inst" % (vis / n)
                desired = max(rule["min_size"], min(rule["max_size"], desired))
                if desired > n and tick - last_out >= args.scale_out_cooldown:
                    add = min(desired - n, args.max_launches - launches)
                    for _ in range(add):
                        launches += 1
                        workers.append(Worker(launches, args, t0))
                    if add:
                        last_out = last_any = tick
                        action = "+%d (%s)" % (add, how)
                    else:
                        action = "launch limit reached"
                elif desired < n and tick - last_any >= args.scale_in_cooldown:
                    for w in sorted(in_service, key=lambda w: -w.start)[: n - desired]:
                        w.terminate()
                    last_any = tick
                    action = "-%d SIGTERM (%s)" % (n - desired, how)
                elif desired != n:
                    action = "cooldown"
            else:
                desired = rule["max_size"] if t_end is None else 0
            in_service = [w for w in workers if w.in_service()]
            draining = [w for w in workers if w.alive() and w.stop_sent is not None]
            peak = max(peak, len(in_service))
            prog = st["progress"] if st else {"shards_done": 0, "shards_total": 0}
            row = "%6.1f %8d %9d %10d %8d %7d %6d/%-4d  %s" % (t, vis, inflight, len(in_service), len(draining),
                                                            desired, prog["shards_done"], prog["shards_total"], action)
            log(row)
            rows.append(row)
        if t_end is not None and not any(w.alive() for w in workers):
            break
        time.sleep(0.1)

    # Whatever is still running (a run that hit its limit): drain, then kill.
    for w in workers:
        w.terminate()
    deadline = time.monotonic() + 45
    while any(w.alive() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    for w in workers:
        if w.alive():
            w.p.kill()
            w.p.wait()
            w.poll()
    t_last_exit = max([w.exit for w in workers] or [t0]) - t0
    ws = sum(w.exit - max(w.start, t0) for w in workers)
    st = status(args, sid)
    result = {
        "kind": kind, "scan_id": sid, "publish_s": round(t_pub, 2),
        "drain_s": round(t_end - t0, 1) if t_end else None,
        "last_worker_exit_s": round(t_last_exit, 1),
        "worker_seconds": round(ws, 1), "workers_launched": launches, "peak_in_service": peak,
        "worker_exit_codes": sorted(set(w.rc for w in workers)),
        "progress": st["progress"] if st else None,
    }
    log("%s: drain %s s, worker-seconds %.1f, %d workers launched, peak %d in service, last worker exit at %.1f s, exit codes %s, %s"
        % (kind, result["drain_s"], ws, launches, peak, t_last_exit, result["worker_exit_codes"], json.dumps(result["progress"])))
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--queue-name", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--scanfile", required=True)
    ap.add_argument("--tf-dir", default="terraform")
    ap.add_argument("--target", default="127.1.0.0/26")
    ap.add_argument("--ports", default="1-2000")
    ap.add_argument("--shard-size", type=int, default=1)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--target-value", type=float)
    ap.add_argument("--min-size", type=int)
    ap.add_argument("--max-size", type=int)
    ap.add_argument("--from-zero-capacity", type=int)
    ap.add_argument("--scale-out-cooldown", type=float, default=0.0)
    ap.add_argument("--scale-in-cooldown", type=float, default=4.0)
    ap.add_argument("--run-timeout", type=int, default=130)
    ap.add_argument("--max-launches", type=int, default=40)
    ap.add_argument("--runs", default="autoscaled,fixed")
    args = ap.parse_args()
    args.queue = "sqs://" + args.queue_name

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    tf = terraform_defaults(args.tf_dir)
    rule = {}
    log("rule parameters:")
    for key, arg, what in [("target", "target_value", "backlog_per_instance_target (visible shards per in-service worker)"),
                           ("min_size", "min_size", "zones.*.min_size"),
                           ("max_size", "max_size", "zones.*.max_size"),
                           ("from_zero", "from_zero_capacity", "zones.*.scale_from_zero_capacity")]:
        given = getattr(args, arg)
        rule[key] = given if given is not None else tf[key]
        src = "terraform default" if given is None else "argument (terraform default %s)" % tf[key]
        log("  %-52s %-6s %s" % (what, rule[key], src))
    log("  %-52s %-6s argument (terraform sets none: %s)" % ("scale-out cooldown (s)", args.scale_out_cooldown,
                                                            tf["cooldowns_in_tf"] or "AWS defaults apply"))
    log("  %-52s %-6s argument (terraform sets none)" % ("scale-in cooldown (s)", args.scale_in_cooldown))
    log("  %-52s %-6s argument" % ("evaluation interval (s)", args.interval))
    if rule["max_size"] < 1 or rule["from_zero"] > rule["max_size"] or rule["min_size"] > rule["max_size"]:
        sys.exit("autoscale_sim: need 1 <= max_size, min_size <= max_size, from_zero <= max_size")

    sqs = Sqs(args.endpoint, args.region)
    qurl = sqs.url(args.queue_name)
    results = []
    try:
        for kind in args.runs.split(","):
            results.append(run(args, sqs, qurl, kind, rule))
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + 40
        for p in PROCS:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    by = {r["kind"]: r for r in results}
    log("")
    log("== summary ==")
    log("%-11s %9s %15s %9s %6s %14s" % ("fleet", "drain(s)", "worker-seconds", "launched", "peak", "shards done"))
    for r in results:
        pr = r["progress"] or {}
        log("%-11s %9s %15.1f %9d %6d %8s/%s failed %s" % (r["kind"], r["drain_s"], r["worker_seconds"],
                                                          r["workers_launched"], r["peak_in_service"],
                                                          pr.get("shards_done"), pr.get("shards_total"),
                                                          pr.get("shards_failed")))
    if "autoscaled" in by and "fixed" in by and by["fixed"]["worker_seconds"] and by["fixed"]["drain_s"]:
        a, f = by["autoscaled"], by["fixed"]
        log("ratio autoscaled/fixed: worker-seconds %.2f, drain time %.2f"
            % (a["worker_seconds"] / f["worker_seconds"], (a["drain_s"] or float("nan")) / f["drain_s"]))
    log("RESULT_JSON " + json.dumps({"rule": rule, "results": results}))
    ok = all(r["drain_s"] is not None and r["progress"] and r["progress"]["shards_failed"] == 0
             and r["progress"]["shards_done"] == r["progress"]["shards_total"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
