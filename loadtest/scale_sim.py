#!/usr/bin/env python3
"""Synthetic estate for the scale simulation (loadtest/scale.sh): ACCOUNTS accounts x
REGIONS regions, TARGETS running instances with private 10.x addresses, spread over
VPCs (a zone per peered VPC group), with instance types from data/instance-network.csv,
a few prohibited types, stopped instances, public addresses and excluded tags, so that
scope has real work. Writes the inventory JSON on stdout. Nothing here is probed."""
import json
import random
import sys

targets = int(sys.argv[1])
accounts = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
regions = ["us-east-1", "eu-west-1", "ap-southeast-2"]
rnd = random.Random(targets)
types = ["t3.small", "t3.medium", "m5.large", "c5.xlarge", "r6g.large", "m6i.2xlarge"]
assets = []
for i in range(targets):
    acct = 100000000000 + i % accounts
    region = regions[(i // accounts) % len(regions)]
    vpc = f"vpc-{acct % 100000:05x}{(i // accounts) % len(regions)}"
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    kind = rnd.random()
    t = rnd.choice(types)
    state = "running"
    tags = {"Name": f"node-{i}"}
    if kind < 0.01:
        t = rnd.choice(["t2.nano", "t1.micro", "m1.small"])
    elif kind < 0.02:
        state = "stopped"
    elif kind < 0.03:
        tags["scan"] = "never"
    a = {
        "id": f"i-{i:017x}",
        "private_ip": ip,
        "instance_type": t,
        "account_id": str(acct),
        "region": region,
        "availability_zone": region + "a",
        "vpc_id": vpc,
        "subnet_id": "subnet-" + vpc[4:],
        "state": state,
        "tags": tags,
        "zone": f"{region}-{acct % 40}",
    }
    if kind > 0.98:
        a["public_ips"] = [f"54.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"]
    assets.append(a)
json.dump(assets, sys.stdout)
