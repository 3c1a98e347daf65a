variable "name" {
  description = "Base name of everything the module creates. It is also scanfleet's SQS base name: the default zone's queue is NAME, zone Z's queue NAME-Z, the dead-letter queue NAME-dlq, so workers and the coordinator use --queue sqs://NAME."
  type        = string
  default     = "scanfleet"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,27}[a-z0-9]$", var.name))
    error_message = "name must be 2-29 characters of a-z, 0-9 and '-', start with a letter and not end with '-' (it names SQS queues, IAM roles, autoscaling groups and the ElastiCache replication group)."
  }
}

variable "zones" {
  description = <<-EOT
    The network zones workers serve, keyed by scanfleet zone name (`scanfleet zones` prints them; "default" is the zone of shards without one). Per zone: the VPC and the subnets its workers run in (dedicated worker subnets: the module attaches its own network ACL to them), the autoscaling bounds, and optionally an instance type.
  EOT
  type = map(object({
    vpc_id                   = string
    subnet_ids               = list(string)
    min_size                 = optional(number, 0)
    max_size                 = optional(number, 10)
    scale_from_zero_capacity = optional(number, 1)
    instance_type            = optional(string)
  }))

  validation {
    condition     = length(var.zones) > 0
    error_message = "zones must name at least one zone."
  }
  validation {
    condition     = alltrue([for z in keys(var.zones) : can(regex("^[A-Za-z0-9_-]+$", z)) && z != "dlq"])
    error_message = "zone names are part of SQS queue names: use only A-Z, a-z, 0-9, '-' and '_'; \"dlq\" is reserved for the dead-letter queue."
  }
  validation {
    condition     = alltrue([for z in keys(var.zones) : length(z) <= 50])
    error_message = "zone names must be at most 50 characters (SQS queue names are at most 80)."
  }
  validation {
    condition     = alltrue([for z in values(var.zones) : length(z.subnet_ids) > 0])
    error_message = "every zone needs at least one subnet."
  }
  validation {
    condition     = alltrue([for z in values(var.zones) : z.min_size >= 0 && z.max_size >= 1 && z.min_size <= z.max_size && z.scale_from_zero_capacity >= 1 && z.scale_from_zero_capacity <= z.max_size])
    error_message = "each zone needs 0 <= min_size <= max_size, max_size >= 1 and 1 <= scale_from_zero_capacity <= max_size."
  }
}

variable "delivery_limit" {
  description = "Deliveries of a shard before it goes to the dead-letter queue: the zone queues' redrive policy maxReceiveCount. Keep it equal to the fleet's SCANFLEET_DELIVERY_LIMIT (scanfleet default 5): `scanfleet queues init` refuses a queue whose policy has another limit."
  type        = number
  default     = 5

  validation {
    condition     = var.delivery_limit >= 1 && var.delivery_limit <= 1000 && floor(var.delivery_limit) == var.delivery_limit
    error_message = "delivery_limit must be a whole number from 1 to 1000 (SQS's maxReceiveCount range)."
  }
}

variable "visibility_timeout_seconds" {
  description = "Visibility timeout of the queues: the shard lease (worker lease_secs, scanfleet default 60). The worker extends it while a shard runs."
  type        = number
  default     = 60

  validation {
    condition     = var.visibility_timeout_seconds >= 3 && var.visibility_timeout_seconds <= 43200
    error_message = "visibility_timeout_seconds must be from 3 to 43200 (12 h)."
  }
}

variable "backlog_per_instance_target" {
  description = "Target of the target-tracking policy: visible shards per in-service worker (ApproximateNumberOfMessagesVisible / GroupInServiceInstances). Roughly (acceptable queue latency) / (time one worker needs per shard)."
  type        = number
  default     = 10

  validation {
    condition     = var.backlog_per_instance_target > 0
    error_message = "backlog_per_instance_target must be positive."
  }
}

variable "instance_type" {
  description = "Default EC2 instance type of workers (a zone may override it). Sizes with a high ENA packets-per-second allowance suit SYN scans."
  type        = string
  default     = "c6in.large"

  validation {
    condition     = !contains(["m1.small", "t1.micro", "t2.nano"], var.instance_type)
    error_message = "m1.small, t1.micro and t2.nano are excluded by AWS's penetration-testing policy."
  }
}

variable "worker_ami" {
  description = "AMI of workers, or an SSM parameter reference resolved at launch. The default is the latest Amazon Linux 2023 (systemd, AWS CLI v2 present)."
  type        = string
  default     = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

variable "worker_binary_url" {
  description = "Where the release build of scanfleet-worker (x86_64 Linux) is fetched at boot: an s3://bucket/key path (read with the worker role) or an https:// URL."
  type        = string

  validation {
    condition     = can(regex("^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|https://.+)$", var.worker_binary_url))
    error_message = "worker_binary_url must be s3://bucket/key or an https:// URL."
  }
}

variable "worker_binary_sha256" {
  description = "SHA-256 of the scanfleet-worker binary (`sha256sum target/release/scanfleet-worker`); boot fails if the download does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.worker_binary_sha256))
    error_message = "worker_binary_sha256 must be 64 lowercase hex digits."
  }
}

variable "job_secret_arn" {
  description = "ARN of the SSM SecureString parameter or Secrets Manager secret holding SCANFLEET_JOB_SECRET (at least 32 bytes: `openssl rand -hex 32`). Create it outside terraform so the secret is never in the state or in user data; workers read it at each start."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:(ssm:[^:]+:[0-9]{12}:parameter/.+|secretsmanager:[^:]+:[0-9]{12}:secret:.+)$", var.job_secret_arn))
    error_message = "job_secret_arn must be an SSM parameter ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME) or a Secrets Manager secret ARN."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for SQS, the Redis auth-token parameter, ElastiCache at rest, worker EBS volumes and the job secret. null: AWS-managed keys."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN or null."
  }
}

variable "probe_cidrs" {
  description = "What workers may probe and hear answers from: the network ACL of the worker subnets allows all traffic to and from these CIDRs (the estate's VPC ranges) and nothing else but AWS APIs, Redis and metrics scrapes. Scope is still decided by scanfleet; this is the network's own limit."
  type        = list(string)

  validation {
    condition     = length(var.probe_cidrs) > 0 && length(var.probe_cidrs) <= 15 && alltrue([for c in var.probe_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "probe_cidrs must hold 1 to 15 IPv4 CIDRs, not 0.0.0.0/0."
  }
}

variable "metrics_port" {
  description = "Port of the workers' /metrics endpoint (SCANFLEET_METRICS_ADDR=0.0.0.0:PORT), reachable from monitoring_cidrs; null serves no metrics."
  type        = number
  default     = 9100

  validation {
    condition     = var.metrics_port == null || (var.metrics_port >= 1024 && var.metrics_port <= 65535)
    error_message = "metrics_port must be from 1024 to 65535, or null."
  }
}

variable "monitoring_cidrs" {
  description = "CIDRs of Prometheus servers that scrape the workers' metrics port."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.monitoring_cidrs) <= 5 && alltrue([for c in var.monitoring_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "monitoring_cidrs must hold at most 5 IPv4 CIDRs, not 0.0.0.0/0."
  }
}

variable "lifecycle_heartbeat_timeout" {
  description = "Seconds a terminating worker is kept in Terminating:Wait without a heartbeat. The worker drains (finishes or releases its shards), sends RecordLifecycleActionHeartbeat while it needs longer, then CompleteLifecycleAction; without either the instance terminates after this (default result CONTINUE)."
  type        = number
  default     = 300

  validation {
    condition     = var.lifecycle_heartbeat_timeout >= 30 && var.lifecycle_heartbeat_timeout <= 7200
    error_message = "lifecycle_heartbeat_timeout must be from 30 to 7200 seconds."
  }
}

variable "worker_grace_seconds" {
  description = "SCANFLEET_GRACE_SECS of workers: how long shards in hand may run after the terminating notice before they are released to the queue."
  type        = number
  default     = 120

  validation {
    condition     = var.worker_grace_seconds >= 0 && var.worker_grace_seconds <= 3600
    error_message = "worker_grace_seconds must be from 0 to 3600."
  }
}

variable "redis_vpc_id" {
  description = "VPC of the ElastiCache replication group (workers of other zones reach it through VPC peering)."
  type        = string
}

variable "redis_subnet_ids" {
  description = "Private subnets of the ElastiCache subnet group, in at least two availability zones (Multi-AZ)."
  type        = list(string)

  validation {
    condition     = length(var.redis_subnet_ids) >= 2
    error_message = "redis_subnet_ids needs at least two subnets (Multi-AZ with automatic failover)."
  }
}

variable "redis_allowed_cidrs" {
  description = "CIDRs allowed to reach Redis on 6379: the worker subnets of zones in other VPCs and the coordinator's subnet. Worker security groups in redis_vpc_id are allowed without this."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.redis_allowed_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "redis_allowed_cidrs must be IPv4 CIDRs, not 0.0.0.0/0."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.r7g.large"
}

variable "redis_shards" {
  description = "Node groups (shards) of the cluster-mode replication group."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_shards >= 1 && var.redis_shards <= 500
    error_message = "redis_shards must be from 1 to 500."
  }
}

variable "redis_replicas_per_shard" {
  description = "Replicas per shard (at least 1 for automatic failover)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas_per_shard >= 1 && var.redis_replicas_per_shard <= 5
    error_message = "redis_replicas_per_shard must be from 1 to 5."
  }
}

variable "discovery_role_name" {
  description = "Name of the read-only discovery role in member accounts (scanfleet --role-name), created by stackset/discovery-role.yaml."
  type        = string
  default     = "scanfleet-discovery"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.discovery_role_name))
    error_message = "discovery_role_name must be a valid IAM role name."
  }
}

variable "discovery_external_id" {
  description = "External ID the discovery role requires (scanfleet --external-id). Only used when deploy_discovery_stackset is true."
  type        = string
  default     = null

  validation {
    condition     = var.discovery_external_id == null || can(regex("^[A-Za-z0-9+=,.@:/_-]{2,1224}$", var.discovery_external_id))
    error_message = "discovery_external_id must be 2-1224 characters of A-Z a-z 0-9 + = , . @ : / _ -."
  }
}

variable "deploy_discovery_stackset" {
  description = "Deploy the discovery role to the organizational units discovery_ou_ids as a service-managed StackSet. Only from the management account or a delegated StackSets administrator; otherwise deploy stackset/discovery-role.yaml yourself."
  type        = bool
  default     = false
}

variable "discovery_ou_ids" {
  description = "Organizational units (or the root id) the discovery StackSet deploys to."
  type        = list(string)
  default     = []
}

variable "coordinator_trusted_principals" {
  description = "IAM principal ARNs (besides EC2 instances with the coordinator instance profile) allowed to assume the coordinator role, e.g. a CI role or an SSO permission set role."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
