# The module's inputs, passed through; see terraform/README.md for each one.

variable "region" {
  description = "AWS region of the fleet."
  type        = string
}

variable "name" {
  description = "Base name (SQS base name: --queue sqs://NAME)."
  type        = string
  default     = "scanfleet"
}

variable "zones" {
  description = "Zones (from `scanfleet zones`) and their worker VPC, subnets and bounds."
  type = map(object({
    vpc_id                   = string
    subnet_ids               = list(string)
    min_size                 = optional(number, 0)
    max_size                 = optional(number, 10)
    scale_from_zero_capacity = optional(number, 1)
    instance_type            = optional(string)
  }))
}

variable "delivery_limit" {
  description = "maxReceiveCount of the zone queues."
  type        = number
  default     = 5
}

variable "worker_binary_url" {
  description = "s3:// or https:// location of the scanfleet-worker release binary."
  type        = string
}

variable "worker_binary_sha256" {
  description = "SHA-256 of that binary."
  type        = string
}

variable "job_secret_arn" {
  description = "SSM parameter or Secrets Manager ARN of SCANFLEET_JOB_SECRET."
  type        = string
}

variable "probe_cidrs" {
  description = "CIDRs the workers may probe."
  type        = list(string)
}

variable "monitoring_cidrs" {
  description = "Prometheus CIDRs."
  type        = list(string)
  default     = []
}

variable "redis_vpc_id" {
  description = "VPC of Redis."
  type        = string
}

variable "redis_subnet_ids" {
  description = "Subnets of Redis (two AZs at least)."
  type        = list(string)
}

variable "redis_allowed_cidrs" {
  description = "Other CIDRs allowed to reach Redis."
  type        = list(string)
  default     = []
}
