"""The SNS sink against moto's server: standard and FIFO topics read back through SQS
subscriptions, FIFO dedup of a repeated event, and an unknown topic dead-lettered with
the AWS error code."""

import json
import os
import time
import uuid

import boto3
import httpx
import pytest

from conftest import fan_out_config, post_events

MOTO = os.environ.get("HOSTD_TEST_MOTO", "http://127.0.0.1:15000")
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


def aws(service):
    return boto3.client(service, endpoint_url=MOTO, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def topic_with_queue(name: str, fifo: bool):
    """A topic and an SQS queue subscribed to it (raw delivery: the body is the message)."""
    sns, sqs = aws("sns"), aws("sqs")
    suffix = ".fifo" if fifo else ""
    attrs = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    arn = sns.create_topic(Name=name + suffix, Attributes=attrs)["TopicArn"]
    q_attrs = {"FifoQueue": "true"} if fifo else {}
    queue_url = sqs.create_queue(QueueName=name + suffix, Attributes=q_attrs)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return arn, queue_url


def drain(queue_url: str, want: int, timeout: float = 20.0) -> list:
    sqs, got, deadline = aws("sqs"), [], time.time() + timeout
    while time.time() < deadline:
        resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   MessageAttributeNames=["All"])
        for m in resp.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        if len(got) >= want:
            # Keep listening a moment so a wrong extra message would be seen.
            time.sleep(1)
            resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            got.extend(resp.get("Messages", []))
            break
    return got


def config(routes: dict) -> str:
    text = fan_out_config(list(routes))
    for name, arn in routes.items():
        text += f"""[tenants.routes.{name}]
type = "sns"
topic_arn = "{arn}"
region = "us-east-1"
endpoint_url = "{MOTO}"
retry = ["200ms", "400ms"]
ordering = "per-key"
"""
    return text


ENV = {"ACME_TOKEN": "t", "ADMIN_TOKEN": "admin", **AWS_ENV}


def event(i: int) -> dict:
    return {"event": "on_tool_end", "name": "search", "run_id": f"r{i}", "root_run_id": "root", "step": i, "data": {"i": i}}


def test_standard_and_fifo_topics_read_back(start_hostd):
    name = f"hostd-{uuid.uuid4().hex[:8]}"
    std_arn, std_q = topic_with_queue(name, fifo=False)
    fifo_arn, fifo_q = topic_with_queue(name, fifo=True)
    h = start_hostd(config({"standard": std_arn, "fifo": fifo_arn}), ENV)
    post_events(h.url, "t", [event(i) for i in range(5)])

    std = drain(std_q, 5)
    assert sorted(json.loads(m["Body"])["step"] for m in std) == list(range(5))
    attrs = std[0]["MessageAttributes"]
    assert attrs["tenant"]["StringValue"] == "acme" and attrs["event"]["StringValue"] == "on_tool_end"
    assert len(attrs["policy_version"]["StringValue"]) == 12

    fifo = drain(fifo_q, 5)
    assert [json.loads(m["Body"])["step"] for m in fifo] == list(range(5)), "FIFO keeps the run's order"


def test_fifo_drops_a_repeat_of_the_same_event(start_hostd):
    name = f"hostd-dup-{uuid.uuid4().hex[:8]}"
    fifo_arn, fifo_q = topic_with_queue(name, fifo=True)
    # hostd's own dedupe window shortened to 1 ms, so posting the event again makes the
    # same delivery again: the same MessageDeduplicationId, as a retry or a replay sends.
    text = config({"fifo": fifo_arn}).replace("[server]\n", '[server]\ndedupe_window = "1ms"\n', 1)
    h = start_hostd(text, ENV)
    post_events(h.url, "t", [event(1)])
    time.sleep(0.2)
    assert post_events(h.url, "t", [event(1)])["duplicates"] == 0, "hostd accepted it again"
    got = drain(fifo_q, 1)
    assert len(got) == 1, f"one SQS message for the repeated event, got {len(got)}"


def test_tenants_sharing_a_fifo_topic_never_drop_each_other(start_hostd):
    name = f"hostd-shared-{uuid.uuid4().hex[:8]}"
    fifo_arn, fifo_q = topic_with_queue(name, fifo=True)
    route = f"""[tenants.routes.fifo]
type = "sns"
topic_arn = "{fifo_arn}"
region = "us-east-1"
endpoint_url = "{MOTO}"
retry = ["200ms", "400ms"]
"""
    head = fan_out_config(["fifo"])
    globex = ("[[tenants]]" + head.split("[[tenants]]", 1)[1]).replace('id = "acme"', 'id = "globex"')
    text = head + route + globex.replace('"ACME_TOKEN"', '"GLOBEX_TOKEN"') + route
    h = start_hostd(text, {**ENV, "GLOBEX_TOKEN": "g"})
    # The same explicit idempotency key from both tenants, the second after the first.
    same = {"event": "on_tool_end", "run_id": "r", "idempotency_key": "order-1", "data": {}}
    post_events(h.url, "g", [same])
    post_events(h.url, "t", [same])
    got = drain(fifo_q, 2)
    assert len(got) == 2, f"one message per tenant, got {len(got)}"
    tenants = sorted(m["MessageAttributes"]["tenant"]["StringValue"] for m in got)
    assert tenants == ["acme", "globex"]


def test_unknown_topic_is_dead_lettered_with_the_aws_error_code(start_hostd):
    arn = "arn:aws:sns:us-east-1:123456789012:does-not-exist"
    h = start_hostd(config({"missing": arn}), ENV)
    post_events(h.url, "t", [event(1)])
    deadline, entries = time.time() + 20, []
    while time.time() < deadline and not entries:
        entries = httpx.get(f"{h.url}/admin/v1/dlq", headers={"authorization": "Bearer admin"}).json()["entries"]
        time.sleep(0.2)
    assert len(entries) == 1
    assert entries[0]["reason"] == "rejected"
    assert "NotFound" in entries[0]["last_error"], entries[0]["last_error"]
