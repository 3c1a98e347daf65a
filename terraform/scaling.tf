# Scaling on backlog per instance: target tracking on the metric math
# ApproximateNumberOfMessagesVisible / GroupInServiceInstances of each zone.
#
# At zero instances that expression divides by zero, has no value, and target
# tracking cannot act: a step-scaling policy, triggered by an alarm on "messages
# are visible and no instance is in service", sets the group to
# scale_from_zero_capacity; target tracking takes over from there.

resource "aws_autoscaling_policy" "backlog" {
  for_each = var.zones

  name                   = "${var.name}-backlog-per-instance"
  autoscaling_group_name = aws_autoscaling_group.worker[each.key].name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value = var.backlog_per_instance_target

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "shards visible in ${aws_sqs_queue.zone[each.key].name}"
        return_data = false
        metric_stat {
          stat = "Sum"
          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"
            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.zone[each.key].name
            }
          }
        }
      }

      metrics {
        id          = "in_service"
        label       = "workers in service"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/AutoScaling"
            metric_name = "GroupInServiceInstances"
            dimensions {
              name  = "AutoScalingGroupName"
              value = aws_autoscaling_group.worker[each.key].name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_instance"
        label       = "backlog per instance"
        expression  = "visible / in_service"
        return_data = true
      }
    }
  }
}

resource "aws_autoscaling_policy" "from_zero" {
  for_each = var.zones

  name                   = "${var.name}-scale-from-zero"
  autoscaling_group_name = aws_autoscaling_group.worker[each.key].name
  policy_type            = "StepScaling"
  adjustment_type        = "ExactCapacity"

  step_adjustment {
    metric_interval_lower_bound = 0
    scaling_adjustment          = each.value.scale_from_zero_capacity
  }
}

resource "aws_cloudwatch_metric_alarm" "from_zero" {
  for_each = var.zones

  alarm_name          = "${var.name}-${local.zone_ids[each.key]}-backlog-without-workers"
  alarm_description   = "Shards wait in ${aws_sqs_queue.zone[each.key].name} and no worker of zone ${each.key} is in service: scale from zero."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_autoscaling_policy.from_zero[each.key].arn]

  metric_query {
    id = "visible"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      period      = 60
      stat        = "Sum"
      dimensions = {
        QueueName = aws_sqs_queue.zone[each.key].name
      }
    }
  }

  metric_query {
    id = "in_service"
    metric {
      namespace   = "AWS/AutoScaling"
      metric_name = "GroupInServiceInstances"
      period      = 60
      stat        = "Average"
      dimensions = {
        AutoScalingGroupName = aws_autoscaling_group.worker[each.key].name
      }
    }
  }

  metric_query {
    id          = "waiting_without_workers"
    expression  = "IF(visible > 0 AND FILL(in_service, 0) == 0, 1, 0)"
    label       = "shards visible and no worker in service"
    return_data = true
  }

  tags = local.tags
}
