#!/usr/bin/env python3
"""Static checks of the scanfleet terraform module, where no provider can be
downloaded: parse every .tf with python-hcl2 and assert what the module must
hold (issue 12). Run: /opt/scanfleet/venv/bin/python terraform/tests/check_module.py

Exits 0 when every check holds, 1 with the list of failed checks otherwise.
python-hcl2 releases disagree on shapes (older ones wrap every attribute in a
one-element list, newer ones keep quotes on strings); `attr` and `blocks` read both.
"""

import json
import re
import sys
from pathlib import Path

import hcl2
import yaml

ROOT = Path(__file__).resolve().parent.parent
FAILURES = []
CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        FAILURES.append(what)
    return bool(cond)


def unquote(v):
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


def parse(path):
    with open(path, encoding="utf-8") as f:
        return hcl2.load(f)


# Older python-hcl2 wraps every attribute value in a list; find out once.
_probe = parse(ROOT / "versions.tf")["terraform"][0]["required_version"]
WRAPPED = isinstance(_probe, list)


def attr(block, key, default=None):
    if block is None or key not in block:
        return default
    v = block[key]
    if WRAPPED and isinstance(v, list) and len(v) == 1:
        v = v[0]
    return unquote(v)


def blocks(block, key):
    """Nested blocks `key { ... }` of a block, as a list of dicts."""
    v = (block or {}).get(key, [])
    if isinstance(v, dict):
        return [v]
    return [b for b in v if isinstance(b, dict)]


def text(v):
    """A value as text, to look for references and literals inside expressions."""
    return v if isinstance(v, str) else json.dumps(v)


def load_dir(d):
    """Resources, data sources, variables, outputs, locals, modules of one directory."""
    mod = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}, "module": {}, "terraform": []}
    for f in sorted(d.glob("*.tf")):
        try:
            doc = parse(f)
        except Exception as e:  # noqa: BLE001 - the parse error is the message
            check(False, f"{f.relative_to(ROOT)} does not parse: {e}")
            continue
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for rname, body in named.items():
                        mod[kind].setdefault(rtype, {})[rname] = body
        for kind in ("variable", "output", "module"):
            for entry in doc.get(kind, []):
                mod[kind].update(entry)
        for entry in doc.get("locals", []):
            mod["locals"].update({k: attr(entry, k) for k in entry})
        mod["terraform"].extend(doc.get("terraform", []))
    return mod


def res(mod, rtype):
    return mod["resource"].get(rtype, {})


# ----------------------------------------------------------------- every file parses
all_tf = [p for p in ROOT.rglob("*.tf") if ".terraform" not in p.parts]
check(len(all_tf) >= 8, f"expected the module split into files, found {len(all_tf)} .tf files")
for p in all_tf:
    try:
        parse(p)
    except Exception as e:  # noqa: BLE001
        check(False, f"{p.relative_to(ROOT)} does not parse: {e}")
for name in ("versions.tf", "variables.tf", "outputs.tf", "sqs.tf", "worker.tf", "scaling.tf", "iam.tf", "network.tf", "redis.tf"):
    check((ROOT / name).is_file(), f"terraform/{name} is missing")

m = load_dir(ROOT)

# -------------------------------------------------------------------- versions
aws_pin = None
for t in m["terraform"]:
    for rp in blocks(t, "required_providers"):
        aws = attr(rp, "aws") if "aws" in rp else None
        if isinstance(aws, list):
            aws = aws[0]
        aws_pin = aws
check(isinstance(aws_pin, dict) and unquote(aws_pin.get("source")) == "hashicorp/aws", "versions.tf: required_providers.aws.source is hashicorp/aws")
check(isinstance(aws_pin, dict) and re.match(r"^~>\s*\d+\.\d+", unquote(aws_pin.get("version", "")) or ""), "versions.tf: the aws provider is pinned with ~> MAJOR.MINOR")

# ------------------------------------------------------------ variables, outputs
for vname, v in m["variable"].items():
    check(len(attr(v, "description", "") or "") >= 10, f"variable {vname} has a description")
    check(attr(v, "type") is not None, f"variable {vname} has a type")
for vname in ("name", "zones", "delivery_limit", "visibility_timeout_seconds", "worker_binary_url", "worker_binary_sha256", "job_secret_arn", "probe_cidrs", "instance_type", "lifecycle_heartbeat_timeout"):
    check(vname in m["variable"] and blocks(m["variable"][vname], "validation"), f"variable {vname} exists and has a validation block")
for oname, o in m["output"].items():
    check(len(attr(o, "description", "") or "") >= 10, f"output {oname} has a description")
for oname in ("queue", "queue_urls", "dead_letter_queue_url", "redis_configuration_endpoint", "autoscaling_group_names", "coordinator_role_arn", "worker_role_arns", "lifecycle_hook_name"):
    check(oname in m["output"], f"output {oname} exists")
check("sqs://${var.name}" in text(attr(m["output"].get("queue"), "value")), "output queue is sqs://${var.name}")

# ------------------------------------------------------------------------- SQS
loc = m["locals"]
check(text(loc.get("dlq_name")) == "${var.name}-dlq", "locals.dlq_name is NAME-dlq (scanfleet's dead-letter queue)")
qn = text(loc.get("queue_names"))
check('"default"' in qn.replace("'", '"') and "var.name" in qn and "${var.name}-${z}" in qn, "locals.queue_names: zone default -> NAME, zone Z -> NAME-Z")
queues = res(m, "aws_sqs_queue")
zq, dlq = queues.get("zone"), queues.get("dlq")
check(zq is not None and "var.zones" in text(attr(zq, "for_each")), "aws_sqs_queue.zone: one queue per zone (for_each = var.zones)")
check(zq is not None and "local.queue_names[each.key]" in text(attr(zq, "name")), "aws_sqs_queue.zone is named by local.queue_names")
rp = text(attr(zq, "redrive_policy", ""))
check("deadLetterTargetArn" in rp and "aws_sqs_queue.dlq.arn" in rp, "zone queues' redrive policy targets the dead-letter queue")
check(re.search(r"maxReceiveCount['\"]?\s*[:=]\s*['\"]?\$\{var\.delivery_limit\}|maxReceiveCount['\"]?\s*[:=]\s*var\.delivery_limit", rp), "zone queues' redrive policy: maxReceiveCount = var.delivery_limit")
check(dlq is not None and "local.dlq_name" in text(attr(dlq, "name")) and attr(dlq, "message_retention_seconds") in (1209600, "1209600"), "aws_sqs_queue.dlq: NAME-dlq kept 14 days")
for qname, q in queues.items():
    check(attr(q, "sqs_managed_sse_enabled") is not None or attr(q, "kms_master_key_id") is not None, f"aws_sqs_queue.{qname} is encrypted")
rap = res(m, "aws_sqs_queue_redrive_allow_policy")
rap_text = text(next(iter(rap.values()), {}))
check(rap and "byQueue" in rap_text and "sourceQueueArns" in rap_text and "aws_sqs_queue.zone" in rap_text and "aws_sqs_queue.dlq" in rap_text, "the DLQ has a redrive-allow policy byQueue naming the zone queues")

# ------------------------------------------------------- launch template, ASG, hook
lts = res(m, "aws_launch_template")
lt = lts.get("worker")
check(lt is not None and "var.zones" in text(attr(lt, "for_each")), "aws_launch_template.worker per zone")
md = blocks(lt, "metadata_options")
check(md and attr(md[0], "http_tokens") == "required", "launch template requires IMDSv2")
ud = text(attr(lt, "user_data", ""))
check("templatefile" in ud and "user-data.sh.tftpl" in ud, "launch template user data comes from templates/user-data.sh.tftpl")
check("job_secret" not in ud.replace("job_secret_service", "").replace("job_secret_id", ""), "user data is given no secret value (only where the job secret is)")
check("random_password" not in ud and ".result" not in ud, "user data is given no generated secret")
tpl = (ROOT / "templates" / "user-data.sh.tftpl").read_text(encoding="utf-8")
for needle in ("AmbientCapabilities=CAP_NET_RAW", "CapabilityBoundingSet=CAP_NET_RAW", "ExecStart=/usr/local/bin/scanfleet-worker", "SCANFLEET_QUEUE=sqs://${queue_base}", "SCANFLEET_ZONE=${zone}", "SCANFLEET_LIFECYCLE_HOOK=", "sha256sum --check", "systemctl enable --now scanfleet-worker.service", "EnvironmentFile=-/run/scanfleet/worker.env", "get-parameter"):
    check(needle in tpl, f"user-data template holds {needle!r}")
check("User=root" not in tpl and "User=scanfleet" in tpl, "the worker unit runs as an unprivileged user")

asg = res(m, "aws_autoscaling_group").get("worker")
check(asg is not None and "var.zones" in text(attr(asg, "for_each")), "aws_autoscaling_group.worker per zone")
metrics = attr(asg, "enabled_metrics", []) or []
check("GroupInServiceInstances" in [unquote(x) for x in metrics], "ASG group metrics are enabled, GroupInServiceInstances among them")
check(attr(asg, "metrics_granularity") == "1Minute", "ASG metrics_granularity 1Minute")
check(blocks(asg, "launch_template") and "aws_launch_template.worker[each.key]" in text(blocks(asg, "launch_template")[0]), "ASG uses its zone's launch template")
check("local.asg_names[each.key]" in text(attr(asg, "name")), "ASG named by local.asg_names (the worker policy is scoped to that name)")

hooks = res(m, "aws_autoscaling_lifecycle_hook")
check(any(attr(h, "lifecycle_transition") == "autoscaling:EC2_INSTANCE_TERMINATING" and attr(h, "heartbeat_timeout") is not None and attr(h, "default_result") == "CONTINUE" and "var.zones" in text(attr(h, "for_each")) for h in hooks.values()), "a terminating lifecycle hook per zone (heartbeat timeout, default CONTINUE)")

# ------------------------------------------------------------------- scaling
pols = res(m, "aws_autoscaling_policy")
tt = [p for p in pols.values() if attr(p, "policy_type") == "TargetTrackingScaling"]
check(len(tt) == 1, "one target-tracking policy (per zone via for_each)")
if tt:
    cms = blocks(blocks(tt[0], "target_tracking_configuration")[0], "customized_metric_specification")
    ms = blocks(cms[0], "metrics") if cms else []
    by_name, expr = {}, None
    for q in ms:
        if attr(q, "expression"):
            expr = q
            continue
        stat = blocks(q, "metric_stat")
        metric = blocks(stat[0], "metric")[0] if stat else {}
        by_name[attr(metric, "metric_name")] = (attr(q, "id"), attr(metric, "namespace"), attr(q, "return_data"))
    v = by_name.get("ApproximateNumberOfMessagesVisible")
    g = by_name.get("GroupInServiceInstances")
    check(v and v[1] == "AWS/SQS", "target tracking reads AWS/SQS ApproximateNumberOfMessagesVisible")
    check(g and g[1] == "AWS/AutoScaling", "target tracking reads AWS/AutoScaling GroupInServiceInstances")
    if v and g and expr:
        e = attr(expr, "expression").replace(" ", "")
        check(e == f"{v[0]}/{g[0]}", f"target tracking expression is visible / in-service ({e})")
        check(attr(expr, "return_data") in (True, "true") and v[2] in (False, "false") and g[2] in (False, "false"), "only the backlog-per-instance expression returns data")
    else:
        check(False, "target tracking uses metric math (metrics and an expression)")
step = [(k, p) for k, p in pols.items() if attr(p, "policy_type") == "StepScaling"]
check(step, "a step-scaling policy for scaling out from zero")
alarms = res(m, "aws_cloudwatch_metric_alarm")
zero_alarm = [a for a in alarms.values() if any(f"aws_autoscaling_policy.{k}" in text(attr(a, "alarm_actions")) for k, _ in step)]
check(zero_alarm, "an alarm triggers the step-scaling policy")
if zero_alarm:
    za = text(zero_alarm[0])
    check("ApproximateNumberOfMessagesVisible" in za and "GroupInServiceInstances" in za and "== 0" in za and "> 0" in za, "the scale-from-zero alarm fires on visible messages > 0 while in-service == 0")

# ------------------------------------------------------------------- Redis
rgs = res(m, "aws_elasticache_replication_group")
rg = next(iter(rgs.values()), None)
check(rg is not None, "an aws_elasticache_replication_group")
check(attr(rg, "transit_encryption_enabled") in (True, "true"), "Redis: transit encryption enabled")
check(attr(rg, "at_rest_encryption_enabled") in (True, "true"), "Redis: at-rest encryption enabled")
check(attr(rg, "cluster_mode") == "enabled" and attr(rg, "num_node_groups") is not None and "cluster.on" in text(attr(rg, "parameter_group_name")), "Redis: cluster mode enabled (cluster_mode, num_node_groups, cluster.on parameter group)")
check(attr(rg, "automatic_failover_enabled") in (True, "true"), "Redis: automatic failover")
check(attr(rg, "auth_token") is not None, "Redis: AUTH token")

# -------------------------------------------------------------------- IAM
RESTRICTABLE_OK_STAR = {"autoscaling:DescribeAutoScalingInstances", "organizations:ListAccounts", "organizations:DescribeOrganization"}
docs = m["data"].get("aws_iam_policy_document", {})


def statements(doc):
    out = []
    for s in blocks(doc, "statement"):
        out.append(s)
    for dyn in blocks(doc, "dynamic"):
        for _, d in dyn.items():
            for c in blocks(d, "content"):
                out.append(c)
    return out


def actions(s):
    return [unquote(a) for a in (attr(s, "actions", []) or [])]


def resources(s):
    return text(attr(s, "resources", []))


for dname, doc in docs.items():
    for s in statements(doc):
        acts = actions(s)
        check(all(a != "*" and not a.endswith(":*") for a in acts), f"policy {dname}: no wildcard action ({acts})")
        r = attr(s, "resources", []) or []
        if [unquote(x) for x in r] == ["*"]:
            check(set(acts) <= RESTRICTABLE_OK_STAR, f"policy {dname}: Resource * only for calls without resource-level permissions ({acts})")

w = docs.get("worker")
check(w is not None and "var.zones" in text(attr(w, "for_each")), "a worker policy per zone")
if w:
    ws = statements(w)
    sqs_res = [resources(s) for s in ws if any(a.startswith("sqs:") for a in actions(s))]
    check(sqs_res and all(("aws_sqs_queue.zone[each.key].arn" in r or "aws_sqs_queue.dlq.arn" in r) and "aws_sqs_queue.zone :" not in r and "for q in" not in r for r in sqs_res), "worker SQS access only to its own zone queue and the DLQ")
    check(any("sqs:ReceiveMessage" in actions(s) and "aws_sqs_queue.zone[each.key].arn" in resources(s) for s in ws), "worker receives from its zone queue")
    lc = [s for s in ws if "autoscaling:CompleteLifecycleAction" in actions(s)]
    check(lc and "autoscaling:RecordLifecycleActionHeartbeat" in actions(lc[0]) and "autoScalingGroupName/${local.asg_names[each.key]}" in resources(lc[0]), "worker: Complete/RecordHeartbeat on its own group only")
    check(any("aws_ssm_parameter.redis_auth_token.arn" in resources(s) for s in ws), "worker reads the Redis token (its Redis access)")
    check(any("var.job_secret_arn" in resources(s) for s in ws), "worker reads the job secret")
c = docs.get("coordinator")
check(c is not None, "a coordinator policy")
if c:
    cs = statements(c)
    check(any("organizations:ListAccounts" in actions(s) for s in cs), "coordinator: Organizations read")
    check(any("sts:AssumeRole" in actions(s) and "role/${var.discovery_role_name}" in resources(s) for s in cs), "coordinator: sts:AssumeRole on the discovery role only")
    check(any("sqs:SendMessage" in actions(s) and "aws_sqs_queue.zone" in resources(s) for s in cs), "coordinator: SQS send on its queues")
    check(all("sqs" not in resources(s) or "aws_sqs_queue." in resources(s) for s in cs), "coordinator SQS access scoped to the module's queues")

# StackSet template of the discovery role
class CfnLoader(yaml.SafeLoader):
    pass


CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None})
ss_path = ROOT / "stackset" / "discovery-role.yaml"
if check(ss_path.is_file(), "terraform/stackset/discovery-role.yaml exists"):
    cfn = yaml.load(ss_path.read_text(encoding="utf-8"), Loader=CfnLoader)
    role = cfn["Resources"]["DiscoveryRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    check(trust.get("Condition", {}).get("StringEquals", {}).get("sts:ExternalId") is not None, "discovery role trust requires sts:ExternalId")
    check(cfn["Parameters"]["ExternalId"].get("NoEcho") is True, "ExternalId parameter is NoEcho")
    acts = [a for p in role["Policies"] for st in p["PolicyDocument"]["Statement"] for a in st["Action"]]
    check(acts and all(re.match(r"^ec2:Describe[A-Za-z]+$", a) for a in acts), f"discovery role is read-only ec2:Describe* calls ({acts})")

# ------------------------------------------------------------------- network
sg_in = res(m, "aws_vpc_security_group_ingress_rule")
sg_out = res(m, "aws_vpc_security_group_egress_rule")


def all_all(rules, cidr_key, cidr):
    return any("aws_security_group.worker" in text(attr(r, "security_group_id")) and attr(r, "ip_protocol") == "-1" and attr(r, cidr_key) == cidr for r in rules.values())


check(all_all(sg_in, "cidr_ipv4", "0.0.0.0/0") and all_all(sg_in, "cidr_ipv6", "::/0"), "worker SG: all traffic in from 0.0.0.0/0 and ::/0 (untracked flows)")
check(all_all(sg_out, "cidr_ipv4", "0.0.0.0/0") and all_all(sg_out, "cidr_ipv6", "::/0"), "worker SG: all traffic out to 0.0.0.0/0 and ::/0 (untracked flows)")
wsg = res(m, "aws_security_group").get("worker", {})
check(not blocks(wsg, "ingress") and not blocks(wsg, "egress"), "worker SG has no inline rules that could make flows tracked")
check("conntrack" in (ROOT / "network.tf").read_text(encoding="utf-8"), "network.tf says why (conntrack)")
nacl = res(m, "aws_network_acl").get("worker")
check(nacl is not None and "each.value.subnet_ids" in text(attr(nacl, "subnet_ids")), "a network ACL on each zone's worker subnets")
check(res(m, "aws_network_acl_rule"), "network ACL rules")
for p in all_tf:
    src = p.read_text(encoding="utf-8")
    check(not re.search(r'resource\s+"aws_nat_gateway"', src), f"{p.relative_to(ROOT)}: no aws_nat_gateway")
    check(not re.search(r'\bnat_gateway_id\b', src), f"{p.relative_to(ROOT)}: no route through a NAT gateway")

# ----------------------------------------------------------------- examples
ex = ROOT / "examples" / "basic"
if check(ex.is_dir(), "terraform/examples/basic exists"):
    e = load_dir(ex)
    mods = e["module"]
    check(len(mods) == 1, "the example calls the module once")
    body = next(iter(mods.values()), {})
    check(attr(body, "source") == "../..", "the example's module source is ../..")
    required = [k for k, v in m["variable"].items() if "default" not in v]
    for k in required:
        check(k in body, f"the example passes the required input {k}")
    for k in body:
        if k not in ("source", "version", "providers", "count", "for_each", "depends_on") and not k.startswith("__"):
            check(k in m["variable"], f"the example passes {k}, an input of the module")
    tfvars = ex / "terraform.tfvars"
    if check(tfvars.is_file(), "examples/basic/terraform.tfvars exists"):
        tv = parse(tfvars)
        for k in tv:
            check(k in e["variable"], f"terraform.tfvars sets {k}, a variable of the example")
        for k, v in e["variable"].items():
            check("default" in v or k in tv, f"terraform.tfvars sets the required example variable {k}")

# ------------------------------------------------------------------- README
readme = ROOT / "README.md"
if check(readme.is_file(), "terraform/README.md exists"):
    rt = readme.read_text(encoding="utf-8")
    for k in m["variable"]:
        check(f"`{k}`" in rt, f"README documents input {k}")
    for k in m["output"]:
        check(f"`{k}`" in rt, f"README documents output {k}")
    for word in ("conntrack", "NAT", "lifecycle", "maxReceiveCount", "GroupInServiceInstances"):
        check(word in rt, f"README explains {word}")

if FAILURES:
    print(f"check_module: {len(FAILURES)} of {CHECKS} checks failed:")
    for f in FAILURES:
        print(f"  FAIL {f}")
    sys.exit(1)
print(f"check_module: all {CHECKS} checks passed ({len(all_tf)} .tf files, python-hcl2 {'list-wrapped' if WRAPPED else 'plain'} values)")
