# Per zone: a launch template (user data installing the systemd unit), an
# autoscaling group with group metrics, and a terminating lifecycle hook.

locals {
  lifecycle_hook_name = "${var.name}-drain"
}

resource "aws_launch_template" "worker" {
  for_each = var.zones

  name          = "${var.name}-worker-${local.zone_ids[each.key]}"
  description   = "scanfleet worker of zone ${each.key}"
  image_id      = var.worker_ami
  instance_type = coalesce(each.value.instance_type, var.instance_type)

  iam_instance_profile {
    arn = aws_iam_instance_profile.worker[each.key].arn
  }

  network_interfaces {
    associate_public_ip_address = false
    security_groups             = [aws_security_group.worker[each.key].id]
    delete_on_termination       = true
  }

  # IMDSv2 only; hop limit 1 keeps the credentials on the instance.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 16
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  user_data = base64encode(templatefile("${path.module}/templates/user-data.sh.tftpl", {
    zone                  = each.key
    queue_base            = var.name
    region                = local.region
    delivery_limit        = var.delivery_limit
    lease_secs            = var.visibility_timeout_seconds
    grace_secs            = var.worker_grace_seconds
    lifecycle_hook        = local.lifecycle_hook_name
    metrics_port          = var.metrics_port
    binary_url            = var.worker_binary_url
    binary_sha256         = var.worker_binary_sha256
    binary_from_s3        = local.binary_from_s3
    job_secret_service    = local.job_secret_service
    job_secret_id         = local.job_secret_id
    redis_token_parameter = aws_ssm_parameter.redis_auth_token.name
    redis_host            = aws_elasticache_replication_group.redis.configuration_endpoint_address
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-worker-${local.zone_ids[each.key]}", "scanfleet:zone" = each.key })
  }

  tags = local.tags
}

resource "aws_autoscaling_group" "worker" {
  for_each = var.zones

  name                = local.asg_names[each.key]
  min_size            = each.value.min_size
  max_size            = each.value.max_size
  vpc_zone_identifier = each.value.subnet_ids
  health_check_type   = "EC2"

  launch_template {
    id      = aws_launch_template.worker[each.key].id
    version = aws_launch_template.worker[each.key].latest_version
  }

  # Group metrics: GroupInServiceInstances is the denominator of the backlog per
  # instance, and the scale-from-zero alarm watches it.
  metrics_granularity = "1Minute"
  enabled_metrics = [
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
  ]

  # Capacity belongs to the scaling policies.
  lifecycle {
    ignore_changes = [desired_capacity]
  }

  dynamic "tag" {
    for_each = merge(local.tags, { "scanfleet:zone" = each.key })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

# Scale-in or replacement: the instance waits in Terminating:Wait while the
# worker drains; it sends heartbeats while it needs longer and completes the
# action (CONTINUE) when its shards are finished or released.
resource "aws_autoscaling_lifecycle_hook" "drain" {
  for_each = var.zones

  name                   = local.lifecycle_hook_name
  autoscaling_group_name = aws_autoscaling_group.worker[each.key].name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.lifecycle_heartbeat_timeout
  default_result         = "CONTINUE"
}
