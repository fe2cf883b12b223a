"""hostd's webhook signatures, checked by the official `standardwebhooks` library and by
`hmac.compare_digest`, including two secrets during a rotation; a tampered body fails."""

import base64
import hashlib
import hmac

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import message_id, plugin, post_events

NEW = "whsec_" + base64.b64encode(b"the-new-signing-key-0123456789").decode()
OLD = "whsec_" + base64.b64encode(b"the-old-signing-key-9876543210").decode()


def config(url: str) -> str:
    return f"""
[server]
data_dir = "{{dir}}/data"
allow_private_targets = true
[[tenants]]
id = "acme"
token_env = "ACME_TOKEN"
policy = "{plugin('redact_pii')}"
[tenants.routes.default]
type = "webhook"
url = "{url}/hook"
secret_env = ["WH_NEW", "WH_OLD"]
"""


def test_both_schemes_verify_with_the_official_library(start_hostd, recorder):
    h = start_hostd(config(recorder.url), {"ACME_TOKEN": "t", "WH_NEW": NEW, "WH_OLD": OLD})
    post_events(h.url, "t", [{"event": "on_tool_end", "run_id": "r1", "root_run_id": "root", "step": 1,
                              "data": {"output": "mail ada@example.com", "n": [3, 1, 2]}}])
    [req] = recorder.wait(1)
    body, headers = req["body"], req["headers"]
    assert b"ada@example.com" not in body, "redacted before it left"

    # Standard Webhooks: either secret verifies (the receiver may hold either during a rotation).
    for secret in (NEW, OLD):
        payload = Webhook(secret).verify(body, headers)
        assert payload["run_id"] == "r1"
    assert len(headers["webhook-signature"].split(" ")) == 2

    # X-Signature-256 with the primary secret, the GitHub / LangChain-guide style.
    key = base64.b64decode(NEW[len("whsec_"):])
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, headers["x-signature-256"])
    # Both carry the message id: the idempotency key scoped by tenant and route.
    assert headers["idempotency-key"] == headers["webhook-id"] == message_id("acme", "default", "root:on_tool_end:1")

    # A tampered body fails both.
    tampered = body.replace(b'"r1"', b'"r2"')
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(tampered, headers)
    forged = "sha256=" + hmac.new(key, tampered, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(forged, headers["x-signature-256"])
    # And a secret hostd does not hold fails too.
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"someone-else").decode()).verify(body, headers)
