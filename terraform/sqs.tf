# One standard queue per zone and the shared dead-letter queue, exactly as
# `scanfleet queues init --queue sqs://NAME --delivery-limit N` would declare
# them, so that scanfleet finds them, accepts their redrive policy and never
# rewrites it.

resource "aws_sqs_queue" "dlq" {
  name = local.dlq_name
  # scanfleet keeps dead letters 14 days (the SQS maximum): SQS keeps a redriven
  # message's first enqueue time, so a shorter retention could drop it at once.
  message_retention_seconds  = 1209600
  visibility_timeout_seconds = var.visibility_timeout_seconds
  sqs_managed_sse_enabled    = var.kms_key_arn == null ? true : null
  kms_master_key_id          = var.kms_key_arn
  tags                       = local.tags
}

resource "aws_sqs_queue" "zone" {
  for_each = var.zones

  name                       = local.queue_names[each.key]
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = 345600
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = var.kms_key_arn == null ? true : null
  kms_master_key_id          = var.kms_key_arn

  # After delivery_limit receives a shard goes to the dead-letter queue, even if
  # every worker that took it crashed before it could dead-letter it itself.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.delivery_limit
  })

  tags = merge(local.tags, { "scanfleet:zone" = each.key })
}

# Only the fleet's zone queues may use the dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [for q in aws_sqs_queue.zone : q.arn]
  })
}
