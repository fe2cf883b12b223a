"""One event fanned out to webhook + Kafka + Redis Streams + SNS arrives at all four;
with the webhook endpoint down, the other three deliver at full rate while the webhook
delivery retries and dead-letters on its own."""

import json
import os
import subprocess
import time
import uuid

import httpx
import redis
from confluent_kafka import Consumer

from conftest import REDIS_URL, fan_out_config, post_events
from test_sns import AWS_ENV, MOTO, drain, topic_with_queue

KAFKA = os.environ.get("HOSTD_TEST_KAFKA", "127.0.0.1:19092")
TANSU = os.environ.get("HOSTD_TEST_TANSU")


def kafka_records(topic: str, want: int, timeout: float = 60.0) -> list:
    c = Consumer({"bootstrap.servers": KAFKA, "group.id": f"fan-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, deadline = [], time.time() + timeout
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(json.loads(m.value()))
    c.close()
    return got


def config(webhook_url: str, topic: str, stream: str, sns_arn: str) -> str:
    return fan_out_config(["webhook", "kafka", "redis", "sns"]) + f"""
[tenants.routes.webhook]
type = "webhook"
url = "{webhook_url}"
secret_env = "WH"
retry = ["300ms", "300ms", "300ms"]
[tenants.routes.kafka]
type = "kafka"
brokers = "{KAFKA}"
topic = "{topic}"
[tenants.routes.redis]
type = "redis-stream"
url = "{REDIS_URL}"
stream = "{stream}"
[tenants.routes.sns]
type = "sns"
topic_arn = "{sns_arn}"
region = "us-east-1"
endpoint_url = "{MOTO}"
"""


def setup(name: str):
    topic = f"fan-{name}"
    subprocess.run([TANSU, "topic", "create", topic, "--broker", f"tcp://{KAFKA}"], check=True, capture_output=True)
    arn, queue = topic_with_queue(f"fan-{name}", fifo=False)
    return topic, f"fan:{name}", arn, queue


ENV = {"ACME_TOKEN": "t", "ADMIN_TOKEN": "admin", "WH": "whsec_ZmFuLW91dC1zZWNyZXQ=", **AWS_ENV}


def test_one_event_reaches_all_four(start_hostd, recorder):
    topic, stream, arn, queue = setup(uuid.uuid4().hex[:8])
    h = start_hostd(config(recorder.url + "/hook", topic, stream, arn), ENV)
    post_events(h.url, "t", [{"event": "on_tool_end", "run_id": "r1", "root_run_id": "root", "step": 1, "data": {"x": 1}}])
    assert json.loads(recorder.wait(1)[0]["body"])["run_id"] == "r1"
    assert kafka_records(topic, 1)[0]["run_id"] == "r1"
    r = redis.from_url(REDIS_URL)
    deadline = time.time() + 20
    while r.xlen(stream) < 1 and time.time() < deadline:
        time.sleep(0.05)
    [(_, fields)] = r.xrange(stream)
    assert json.loads(fields[b"payload"])["run_id"] == "r1"
    assert json.loads(drain(queue, 1)[0]["Body"])["run_id"] == "r1"


def test_a_dead_webhook_does_not_hold_back_the_other_three(start_hostd):
    topic, stream, arn, queue = setup(uuid.uuid4().hex[:8])
    h = start_hostd(config("http://127.0.0.1:1/refused", topic, stream, arn), ENV)
    n = 200
    started = time.time()
    post_events(h.url, "t", [{"event": "on_tool_end", "run_id": f"r{i}", "root_run_id": "root", "step": i} for i in range(n)])
    assert len(kafka_records(topic, n)) == n
    r = redis.from_url(REDIS_URL)
    deadline = time.time() + 20
    while r.xlen(stream) < n and time.time() < deadline:
        time.sleep(0.05)
    assert r.xlen(stream) == n
    assert len(drain(queue, n, timeout=30)) == n
    print(f"kafka, redis and sns took {time.time() - started:.2f}s for {n} events with the webhook down")
    # The webhook deliveries retry on their own schedule, then dead-letter, one entry each.
    deadline, entries = time.time() + 30, []
    while time.time() < deadline and len(entries) < n:
        entries = httpx.get(f"{h.url}/admin/v1/dlq?route=webhook&limit=1000", headers={"authorization": "Bearer admin"}).json()["entries"]
        time.sleep(0.2)
    assert len(entries) == n
    assert all(e["route"] == "webhook" and e["attempts"] == 4 and e["reason"] == "exhausted" for e in entries)
    # (A page holds at most 100 entries unless `limit` says more.)
    other = httpx.get(f"{h.url}/admin/v1/dlq?limit=1000", headers={"authorization": "Bearer admin"}).json()["entries"]
    assert len(other) == n, "no other route dead-lettered anything"
