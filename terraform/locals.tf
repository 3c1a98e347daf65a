data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # scanfleet's SQS naming (common/src/queue/sqs): zone "default" is NAME, zone Z
  # is NAME-Z, and every zone queue dead-letters to the one queue NAME-dlq, which
  # `scanfleet queues dead-letters --queue sqs://NAME` reads.
  queue_names = { for z in keys(var.zones) : z => z == "default" ? var.name : "${var.name}-${z}" }
  dlq_name    = "${var.name}-dlq"

  # Per zone: a name usable for IAM roles, groups and alarms (zone names may hold '_').
  zone_ids  = { for z in keys(var.zones) : z => substr(replace(lower(z), "_", "-"), 0, 32) }
  asg_names = { for z, id in local.zone_ids : z => "${var.name}-worker-${id}" }

  # The job secret lives in SSM or Secrets Manager; workers read it at start.
  job_secret_service = split(":", var.job_secret_arn)[2]
  # Both GetParameter and GetSecretValue take the ARN as the name.
  job_secret_id = var.job_secret_arn

  binary_from_s3 = startswith(var.worker_binary_url, "s3://")
  binary_s3_arn  = local.binary_from_s3 ? "arn:${local.partition}:s3:::${trimprefix(var.worker_binary_url, "s3://")}" : null

  tags = merge({ "scanfleet:module" = var.name }, var.tags)
}
