# Example values: replace the ids with your own (`scanfleet zones --inventory
# inventory.json` names the zones).
region = "eu-west-1"
name   = "scanfleet"

zones = {
  default = {
    vpc_id     = "vpc-0a1b2c3d4e5f60718"
    subnet_ids = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
    max_size   = 20
  }
  "zone-vpc-0f1e2d3c4b5a69788" = {
    vpc_id        = "vpc-0f1e2d3c4b5a69788"
    subnet_ids    = ["subnet-0f1e2d3c4b5a60003"]
    max_size      = 5
    instance_type = "c6in.xlarge"
  }
}

delivery_limit = 5

# sha256sum target/release/scanfleet-worker; aws s3 cp target/release/scanfleet-worker s3://...
worker_binary_url    = "s3://example-scanfleet-releases/v0.1.0/scanfleet-worker"
worker_binary_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

# aws ssm put-parameter --type SecureString --name /scanfleet/job-secret --value "$(openssl rand -hex 32)"
job_secret_arn = "arn:aws:ssm:eu-west-1:111122223333:parameter/scanfleet/job-secret"

probe_cidrs      = ["10.0.0.0/8", "172.16.0.0/12"]
monitoring_cidrs = ["10.20.0.0/24"]

redis_vpc_id        = "vpc-0a1b2c3d4e5f60718"
redis_subnet_ids    = ["subnet-0a1b2c3d4e5f60011", "subnet-0a1b2c3d4e5f60012"]
redis_allowed_cidrs = ["10.30.0.0/22", "10.20.1.0/24"]
