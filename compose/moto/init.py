"""One-shot setup of the moto server for docker-compose.yml: the SQS queue that
`scanfleet watch` reads EC2 state-change events from. Idempotent."""
import os

import boto3

endpoint = os.environ.get("MOTO_ENDPOINT", "http://moto:5000")
name = os.environ.get("EVENTS_QUEUE_NAME", "scanfleet-events")
sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))
url = sqs.create_queue(QueueName=name)["QueueUrl"]
print(f"moto-init: events queue {url}", flush=True)
