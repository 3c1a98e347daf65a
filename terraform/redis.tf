# ElastiCache for Redis: the fleet's result store. Cluster mode enabled (keys carry
# a {scan} hash tag, so one scan's keys share a slot), TLS in transit (rediss://)
# with an auth token, encrypted at rest, Multi-AZ with automatic failover.

resource "random_password" "redis_auth_token" {
  length  = 64
  special = false
}

# The token is stored for the workers and the coordinator to read at start; like
# every secret terraform generates it is also in the state: keep the state
# encrypted and access-controlled.
resource "aws_ssm_parameter" "redis_auth_token" {
  #checkov:skip=CKV_AWS_337:a customer-managed key is used when kms_key_arn is set; the default is the AWS-managed key
  name        = "/${var.name}/redis-auth-token"
  description = "AUTH token of the scanfleet Redis (ElastiCache)"
  type        = "SecureString"
  key_id      = var.kms_key_arn
  value       = random_password.redis_auth_token.result
  tags        = local.tags
}

resource "aws_elasticache_subnet_group" "redis" {
  name        = "${var.name}-redis"
  description = "scanfleet Redis"
  subnet_ids  = var.redis_subnet_ids
  tags        = local.tags
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "scanfleet Redis: TLS 6379 from workers and the coordinator"
  vpc_id      = var.redis_vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_workers" {
  for_each = { for z, v in var.zones : z => v if v.vpc_id == var.redis_vpc_id }

  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from workers of zone ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.worker[each.key].id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_cidrs" {
  for_each = toset(var.redis_allowed_cidrs)

  security_group_id = aws_security_group.redis.id
  description       = "Redis from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 6379
  to_port           = 6379
  cidr_ipv4         = each.value
}

resource "aws_elasticache_replication_group" "redis" {
  #checkov:skip=CKV_AWS_191:a customer-managed key is used when kms_key_arn is set; the default is the AWS-managed key
  replication_group_id = "${var.name}-results"
  description          = "scanfleet results (cluster mode, TLS, encrypted at rest)"
  engine               = "redis"
  engine_version       = "7.1"
  node_type            = var.redis_node_type
  port                 = 6379
  parameter_group_name = "default.redis7.cluster.on"

  cluster_mode            = "enabled"
  num_node_groups         = var.redis_shards
  replicas_per_node_group = var.redis_replicas_per_shard

  automatic_failover_enabled = true
  multi_az_enabled           = true

  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = random_password.redis_auth_token.result
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn

  subnet_group_name  = aws_elasticache_subnet_group.redis.name
  security_group_ids = [aws_security_group.redis.id]

  snapshot_retention_limit   = 7
  auto_minor_version_upgrade = true

  tags = local.tags
}
