output "queue" {
  description = "The --queue value (SCANFLEET_QUEUE) of the coordinator and the workers."
  value       = "sqs://${var.name}"
}

output "queue_urls" {
  description = "URL of each zone's queue, by zone."
  value       = { for z, q in aws_sqs_queue.zone : z => q.url }
}

output "queue_arns" {
  description = "ARN of each zone's queue, by zone."
  value       = { for z, q in aws_sqs_queue.zone : z => q.arn }
}

output "dead_letter_queue_url" {
  description = "URL of the dead-letter queue NAME-dlq (scanfleet queues dead-letters reads it)."
  value       = aws_sqs_queue.dlq.url
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "delivery_limit" {
  description = "maxReceiveCount of the zone queues: pass it as SCANFLEET_DELIVERY_LIMIT to the coordinator."
  value       = var.delivery_limit
}

output "redis_configuration_endpoint" {
  description = "Configuration endpoint of the ElastiCache replication group (TLS, port 6379)."
  value       = aws_elasticache_replication_group.redis.configuration_endpoint_address
}

output "redis_auth_token_parameter" {
  description = "SSM SecureString parameter holding the Redis AUTH token; SCANFLEET_REDIS is rediss://:TOKEN@ENDPOINT:6379."
  value       = aws_ssm_parameter.redis_auth_token.name
}

output "autoscaling_group_names" {
  description = "Worker autoscaling group of each zone."
  value       = { for z, g in aws_autoscaling_group.worker : z => g.name }
}

output "launch_template_ids" {
  description = "Worker launch template of each zone."
  value       = { for z, t in aws_launch_template.worker : z => t.id }
}

output "lifecycle_hook_name" {
  description = "Name of the terminating lifecycle hook (the workers' SCANFLEET_LIFECYCLE_HOOK)."
  value       = local.lifecycle_hook_name
}

output "worker_role_arns" {
  description = "Worker IAM role of each zone."
  value       = { for z, r in aws_iam_role.worker : z => r.arn }
}

output "worker_security_group_ids" {
  description = "Worker security group of each zone (all traffic; see network.tf)."
  value       = { for z, g in aws_security_group.worker : z => g.id }
}

output "worker_network_acl_ids" {
  description = "Network ACL of each zone's worker subnets."
  value       = { for z, a in aws_network_acl.worker : z => a.id }
}

output "coordinator_role_arn" {
  description = "Coordinator IAM role: the CoordinatorRoleArn parameter of stackset/discovery-role.yaml."
  value       = aws_iam_role.coordinator.arn
}

output "coordinator_instance_profile" {
  description = "Instance profile of the coordinator role, for an EC2 coordinator."
  value       = aws_iam_instance_profile.coordinator.name
}

output "discovery_role_name" {
  description = "The --role-name of scanfleet discover."
  value       = var.discovery_role_name
}

output "discovery_stackset_template" {
  description = "Path of the member-account discovery role template (CloudFormation StackSet)."
  value       = "${path.module}/stackset/discovery-role.yaml"
}
