# IAM: a coordinator role, one worker role per zone (its queue, the dead-letter
# queue, the Redis auth token, its own autoscaling group), and the member-account
# discovery role as a StackSet (stackset/discovery-role.yaml).

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    sid     = "Ec2Instances"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------- coordinator

data "aws_iam_policy_document" "coordinator_assume" {
  source_policy_documents = [data.aws_iam_policy_document.ec2_assume.json]

  dynamic "statement" {
    for_each = length(var.coordinator_trusted_principals) > 0 ? [1] : []
    content {
      sid     = "TrustedPrincipals"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "AWS"
        identifiers = var.coordinator_trusted_principals
      }
    }
  }
}

resource "aws_iam_role" "coordinator" {
  name               = "${var.name}-coordinator"
  description        = "scanfleet coordinator: discovers the organization and publishes shards"
  assume_role_policy = data.aws_iam_policy_document.coordinator_assume.json
  tags               = local.tags
}

resource "aws_iam_instance_profile" "coordinator" {
  name = "${var.name}-coordinator"
  role = aws_iam_role.coordinator.name
  tags = local.tags
}

data "aws_iam_policy_document" "coordinator" {
  # `scanfleet discover --org`: ListAccounts. Organizations read calls have no
  # resource-level permissions, hence "*".
  statement {
    sid = "OrganizationsRead"
    actions = [
      "organizations:DescribeOrganization",
      "organizations:ListAccounts",
    ]
    resources = ["*"]
  }

  # Into every member account, only through the discovery role.
  statement {
    sid       = "AssumeDiscoveryRole"
    actions   = ["sts:AssumeRole"]
    resources = ["arn:${local.partition}:iam::*:role/${var.discovery_role_name}"]
  }

  # Publishing shards; `queues init` and the first fleet scan declare (CreateQueue
  # finds an existing queue, SetQueueAttributes only the visibility timeout).
  statement {
    sid = "SendShards"
    actions = [
      "sqs:SendMessage",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
      "sqs:CreateQueue",
      "sqs:SetQueueAttributes",
    ]
    resources = concat([for q in aws_sqs_queue.zone : q.arn], [aws_sqs_queue.dlq.arn])
  }

  # `scanfleet queues dead-letters` takes dead letters off with their reasons.
  statement {
    sid       = "ReadDeadLetters"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  statement {
    sid       = "ReadSecrets"
    actions   = local.job_secret_service == "ssm" ? ["ssm:GetParameter"] : ["secretsmanager:GetSecretValue"]
    resources = [var.job_secret_arn]
  }

  statement {
    sid       = "ReadRedisToken"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.redis_auth_token.arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [1]
    content {
      sid       = "UseFleetKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "coordinator" {
  name   = "scanfleet-coordinator"
  role   = aws_iam_role.coordinator.id
  policy = data.aws_iam_policy_document.coordinator.json
}

# --------------------------------------------------------------------- workers

resource "aws_iam_role" "worker" {
  for_each = var.zones

  name               = "${var.name}-worker-${local.zone_ids[each.key]}"
  description        = "scanfleet worker of zone ${each.key}"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = merge(local.tags, { "scanfleet:zone" = each.key })
}

resource "aws_iam_instance_profile" "worker" {
  for_each = var.zones

  name = "${var.name}-worker-${local.zone_ids[each.key]}"
  role = aws_iam_role.worker[each.key].name
  tags = local.tags
}

data "aws_iam_policy_document" "worker" {
  for_each = var.zones

  # Its own zone queue only: receive, extend the lease, ack, retry.
  statement {
    sid = "ConsumeZoneQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.zone[each.key].arn]
  }

  # A worker dead-letters a shard itself (with its reason) on its last delivery.
  statement {
    sid       = "SendDeadLetters"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # Redis: the workers authenticate with the auth token (AUTH over TLS).
  statement {
    sid       = "ReadRedisToken"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.redis_auth_token.arn]
  }

  statement {
    sid       = "ReadJobSecret"
    actions   = local.job_secret_service == "ssm" ? ["ssm:GetParameter"] : ["secretsmanager:GetSecretValue"]
    resources = [var.job_secret_arn]
  }

  # The terminating lifecycle hook of its own group.
  statement {
    sid = "LifecycleOfOwnGroup"
    actions = [
      "autoscaling:CompleteLifecycleAction",
      "autoscaling:RecordLifecycleActionHeartbeat",
    ]
    resources = ["arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.asg_names[each.key]}"]
  }

  # Polling its own lifecycle state; Describe calls have no resource-level permissions.
  statement {
    sid       = "DescribeOwnInstance"
    actions   = ["autoscaling:DescribeAutoScalingInstances"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = local.binary_from_s3 ? [1] : []
    content {
      sid       = "FetchWorkerBinary"
      actions   = ["s3:GetObject"]
      resources = [local.binary_s3_arn]
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [1]
    content {
      sid       = "UseFleetKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "worker" {
  for_each = var.zones

  name   = "scanfleet-worker"
  role   = aws_iam_role.worker[each.key].id
  policy = data.aws_iam_policy_document.worker[each.key].json
}

# ------------------------------------------------------- discovery (StackSet)

resource "aws_cloudformation_stack_set" "discovery" {
  count = var.deploy_discovery_stackset ? 1 : 0

  name             = "${var.name}-discovery-role"
  description      = "scanfleet read-only discovery role, assumed by the coordinator with an external ID"
  permission_model = "SERVICE_MANAGED"
  capabilities     = ["CAPABILITY_NAMED_IAM"]
  template_body    = file("${path.module}/stackset/discovery-role.yaml")

  auto_deployment {
    enabled                          = true
    retain_stacks_on_account_removal = false
  }

  parameters = {
    RoleName           = var.discovery_role_name
    CoordinatorRoleArn = aws_iam_role.coordinator.arn
    ExternalId         = var.discovery_external_id
  }

  lifecycle {
    ignore_changes = [administration_role_arn]
    precondition {
      condition     = var.discovery_external_id != null && length(var.discovery_ou_ids) > 0
      error_message = "deploy_discovery_stackset needs discovery_external_id and discovery_ou_ids."
    }
  }

  tags = local.tags
}

resource "aws_cloudformation_stack_set_instance" "discovery" {
  count = var.deploy_discovery_stackset ? 1 : 0

  stack_set_name = aws_cloudformation_stack_set.discovery[0].name
  region         = local.region
  deployment_targets {
    organizational_unit_ids = var.discovery_ou_ids
  }
}
