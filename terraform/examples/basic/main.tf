# A whole scanfleet fleet in one region: two zones, Redis, IAM, scaling.
#
#   cd terraform/examples/basic
#   cp terraform.tfvars my.tfvars   # then edit the ids
#   terraform init && terraform apply -var-file=my.tfvars

provider "aws" {
  region = var.region

  default_tags {
    tags = { project = "scanfleet" }
  }
}

module "scanfleet" {
  source = "../.."

  name                 = var.name
  zones                = var.zones
  delivery_limit       = var.delivery_limit
  worker_binary_url    = var.worker_binary_url
  worker_binary_sha256 = var.worker_binary_sha256
  job_secret_arn       = var.job_secret_arn
  probe_cidrs          = var.probe_cidrs
  monitoring_cidrs     = var.monitoring_cidrs
  redis_vpc_id         = var.redis_vpc_id
  redis_subnet_ids     = var.redis_subnet_ids
  redis_allowed_cidrs  = var.redis_allowed_cidrs
}

output "queue" {
  description = "SCANFLEET_QUEUE for the coordinator."
  value       = module.scanfleet.queue
}

output "coordinator_role_arn" {
  description = "Pass to stackset/discovery-role.yaml as CoordinatorRoleArn."
  value       = module.scanfleet.coordinator_role_arn
}

output "redis_configuration_endpoint" {
  description = "Redis (TLS) endpoint."
  value       = module.scanfleet.redis_configuration_endpoint
}

output "autoscaling_group_names" {
  description = "Worker groups by zone."
  value       = module.scanfleet.autoscaling_group_names
}
