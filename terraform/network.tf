# Worker networking.
#
# Security group: all traffic in and out, from and to anywhere (IPv4 and IPv6).
# That is what makes EC2 leave a flow untracked: connection tracking is skipped
# only when both an all-traffic 0.0.0.0/0 (and ::/0) inbound rule and the same
# outbound rule exist. A SYN scan opens one flow per probed port; tracked, each
# one takes a conntrack entry for minutes, and past the instance's allowance the
# ENA drops packets (ethtool: conntrack_allowance_exceeded). ICMP (host
# discovery pings) stays tracked whatever the rules.
#
# Filtering is therefore done by the network ACL of the worker subnets, which is
# stateless and has no per-flow cost: probes and their answers to and from
# probe_cidrs, HTTPS to AWS APIs, Redis, metrics scrapes; nothing else.
#
# No NAT gateway: probes stay inside the estate's VPCs and peerings; a NAT
# gateway on that path would track every probe flow (and cap them at 55,000 per
# destination). AWS APIs are reached through VPC endpoints or the subnet's own
# routes, which the module leaves to you.

resource "aws_security_group" "worker" {
  #checkov:skip=CKV2_AWS_5:attached to the workers by the launch template's network_interfaces (checkov's graph misses it for some for_each keys)
  for_each = var.zones

  name        = "${var.name}-worker-${local.zone_ids[each.key]}"
  description = "scanfleet workers of zone ${each.key}: all traffic, so probe flows are untracked; filtering is the subnet NACL"
  vpc_id      = each.value.vpc_id
  tags        = merge(local.tags, { "scanfleet:zone" = each.key })
}

resource "aws_vpc_security_group_ingress_rule" "worker_all_v4" {
  #checkov:skip=CKV_AWS_24:all-traffic ingress is what keeps probe flows untracked (ENA conntrack allowance); the subnet NACL filters instead, SSH is not served
  #checkov:skip=CKV_AWS_25:all-traffic ingress is what keeps probe flows untracked (ENA conntrack allowance); the subnet NACL filters instead, RDP is not served
  #checkov:skip=CKV_AWS_260:all-traffic ingress is what keeps probe flows untracked (ENA conntrack allowance); the subnet NACL filters instead, nothing listens on 80
  #checkov:skip=CKV_AWS_277:all-traffic ingress is what keeps probe flows untracked (ENA conntrack allowance); the subnet NACL filters instead
  for_each = var.zones

  security_group_id = aws_security_group.worker[each.key].id
  description       = "all in: keeps probe flows untracked"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "worker_all_v6" {
  #checkov:skip=CKV_AWS_24:all-traffic ingress is what keeps probe flows untracked (ENA conntrack allowance); the subnet NACL filters instead, SSH is not served
  #checkov:skip=CKV_AWS_25:all-traffic ingress is what keeps probe flows untracked (ENA conntrack allowance); the subnet NACL filters instead, RDP is not served
  #checkov:skip=CKV_AWS_260:all-traffic ingress is what keeps probe flows untracked (ENA conntrack allowance); the subnet NACL filters instead, nothing listens on 80
  #checkov:skip=CKV_AWS_277:all-traffic ingress is what keeps probe flows untracked (ENA conntrack allowance); the subnet NACL filters instead
  for_each = var.zones

  security_group_id = aws_security_group.worker[each.key].id
  description       = "all in (IPv6): keeps probe flows untracked"
  ip_protocol       = "-1"
  cidr_ipv6         = "::/0"
}

resource "aws_vpc_security_group_egress_rule" "worker_all_v4" {
  for_each = var.zones

  security_group_id = aws_security_group.worker[each.key].id
  description       = "all out: keeps probe flows untracked"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "worker_all_v6" {
  for_each = var.zones

  security_group_id = aws_security_group.worker[each.key].id
  description       = "all out (IPv6): keeps probe flows untracked"
  ip_protocol       = "-1"
  cidr_ipv6         = "::/0"
}

locals {
  # Stateless rules of the worker subnets, the same in every zone. Lower numbers
  # are evaluated first; anything not allowed falls to the default deny.
  nacl_rules = merge(
    # Probes out and their answers (SYN-ACK, RST, banners) back, to and from the estate.
    { for i, c in var.probe_cidrs : "probe-out-${i}" => { rule_number = 100 + i, egress = true, action = "allow", protocol = "-1", cidr = c, from = 0, to = 0 } },
    { for i, c in var.probe_cidrs : "probe-in-${i}" => { rule_number = 100 + i, egress = false, action = "allow", protocol = "-1", cidr = c, from = 0, to = 0 } },
    {
      # The worker's own clients: HTTPS to SQS, SSM, Auto Scaling and S3 (VPC
      # endpoints or the subnet's routes) and Redis over TLS; their answers come
      # back to the kernel's ephemeral ports (the ACL is stateless; Linux's
      # ip_local_port_range, 32768-60999, which leaves out RDP, SSH and /metrics).
      "https-out"    = { rule_number = 200, egress = true, action = "allow", protocol = "tcp", cidr = "0.0.0.0/0", from = 443, to = 443 }
      "redis-out"    = { rule_number = 210, egress = true, action = "allow", protocol = "tcp", cidr = "0.0.0.0/0", from = 6379, to = 6379 }
      "ephemeral-in" = { rule_number = 200, egress = false, action = "allow", protocol = "tcp", cidr = "0.0.0.0/0", from = 32768, to = 60999 }
    },
    # /metrics scraped from monitoring_cidrs (50-54) and from nowhere else (90,
    # evaluated before the broader allows above).
    var.metrics_port == null ? {} : merge(
      { for i, c in var.monitoring_cidrs : "metrics-in-${i}" => { rule_number = 50 + i, egress = false, action = "allow", protocol = "tcp", cidr = c, from = var.metrics_port, to = var.metrics_port } },
      { for i, c in var.monitoring_cidrs : "metrics-out-${i}" => { rule_number = 50 + i, egress = true, action = "allow", protocol = "tcp", cidr = c, from = 1024, to = 65535 } },
      { "metrics-in-deny" = { rule_number = 90, egress = false, action = "deny", protocol = "tcp", cidr = "0.0.0.0/0", from = var.metrics_port, to = var.metrics_port } },
    ),
  )
  zone_nacl_rules = merge([
    for z in keys(var.zones) : { for k, r in local.nacl_rules : "${z}/${k}" => merge(r, { zone = z }) }
  ]...)
}

resource "aws_network_acl" "worker" {
  #checkov:skip=CKV2_AWS_1:attached to the worker subnets by its own subnet_ids argument (checkov's graph looks for aws_network_acl_association)
  for_each = var.zones

  vpc_id     = each.value.vpc_id
  subnet_ids = each.value.subnet_ids
  tags       = merge(local.tags, { Name = "${var.name}-worker-${local.zone_ids[each.key]}", "scanfleet:zone" = each.key })
}

resource "aws_network_acl_rule" "worker" {
  for_each = local.zone_nacl_rules

  network_acl_id = aws_network_acl.worker[each.value.zone].id
  rule_number    = each.value.rule_number
  egress         = each.value.egress
  rule_action    = each.value.action
  protocol       = each.value.protocol
  cidr_block     = each.value.cidr
  from_port      = each.value.from
  to_port        = each.value.to
}
