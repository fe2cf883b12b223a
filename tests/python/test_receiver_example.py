"""examples/receiver against real hostd deliveries and a real Redis: verifies, rejects
stale and forged requests, and answers 200 to a replay without processing it twice."""

import base64
import json
import os
import pathlib
import subprocess
import sys
import time

import httpx
import pytest

from conftest import REDIS_URL, ROOT, Recorder, fan_out_config, free_port, message_id, post_events

SECRET = "whsec_" + base64.b64encode(b"receiver-example-signing-key").decode()


@pytest.fixture
def receiver(tmp_path):
    import redis

    redis.from_url(REDIS_URL).flushdb()
    port = free_port()
    out = tmp_path / "received.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "receiver:app", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT / "examples/receiver",
        env={**os.environ, "WEBHOOK_SECRET": SECRET, "REDIS_URL": REDIS_URL, "RECEIVER_OUT": str(out)},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url, out
    proc.kill()
    proc.wait()


def lines(path: pathlib.Path) -> list:
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def test_receiver_verifies_and_dedupes(start_hostd, receiver):
    url, out = receiver
    # A recorder in front lets the test replay exactly what hostd sent.
    config = fan_out_config(["receiver", "copy"], admin=False) + f"""
[tenants.routes.receiver]
type = "webhook"
url = "{url}/"
secret_env = "WH"
[tenants.routes.copy]
type = "webhook"
url = "COPY_URL"
secret_env = "WH"
"""
    copy = Recorder()
    h = start_hostd(config.replace("COPY_URL", copy.url + "/copy"), {"ACME_TOKEN": "t", "WH": SECRET})
    post_events(h.url, "t", [{"event": "on_tool_end", "run_id": f"r{i}", "root_run_id": "root", "step": i} for i in range(3)])
    deadline = time.time() + 15
    while len(lines(out)) < 3 and time.time() < deadline:
        time.sleep(0.05)
    want = sorted(message_id("acme", "receiver", f"root:on_tool_end:{i}") for i in range(3))
    assert sorted(l["webhook_id"] for l in lines(out)) == want

    # The copy route's delivery of the same event is another delivery (its id is scoped
    # by route): processed once; a replay of it (same id, fresh signature) answers 200
    # and is not processed again.
    sent = copy.wait(3)[0]
    sent["headers"] = {k: v for k, v in sent["headers"].items() if k not in ("host", "content-length")}
    first = httpx.post(url, content=sent["body"], headers=sent["headers"])
    assert first.status_code == 200 and first.text == "ok"
    replay = httpx.post(url, content=sent["body"], headers=sent["headers"])
    assert replay.status_code == 200 and replay.text == "duplicate"
    assert len(lines(out)) == 4

    # A forged body is refused.
    forged = httpx.post(url, content=sent["body"].replace(b"root", b"evil"), headers=sent["headers"])
    assert forged.status_code == 401 and "webhook-signature" in forged.text

    # A stale timestamp (over 5 minutes) is refused.
    stale = dict(sent["headers"], **{"webhook-timestamp": str(int(time.time()) - 600)})
    resp = httpx.post(url, content=sent["body"], headers=stale)
    assert resp.status_code == 401
    copy.server.shutdown()
