"""A webhook receiver that trusts hostd's deliveries: a plain ASGI app.

It verifies both signatures hostd sends (Standard Webhooks with the official
`standardwebhooks` library, and `X-Signature-256` with `hmac.compare_digest`), rejects
timestamps older than 5 minutes, and dedupes on `webhook-id` with Redis
`SET NX EX 86400` — answering 200 for a first delivery and a replay alike, so hostd
stops retrying either way. hostd's `webhook-id` is the event's idempotency key scoped by
tenant and route (`msg_` + a sha256), so one receiver can serve several tenants: one
tenant's deliveries never dedupe another's.

Run it:  WEBHOOK_SECRET=whsec_... REDIS_URL=redis://127.0.0.1:6379/0 \
         uvicorn receiver:app --port 9000
Settings (environment): WEBHOOK_SECRET (required; several, space-separated, during a
rotation), REDIS_URL, RECEIVER_OUT (a JSONL file each first-seen event is appended to;
default: print it).
"""

import base64
import hashlib
import hmac
import json
import os

import redis.asyncio as redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

DEDUPE_SECONDS = 86400
SECRETS = os.environ.get("WEBHOOK_SECRET", "").split()
REDIS = redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
OUT = os.environ.get("RECEIVER_OUT")


def _key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after `whsec_`, or the raw text."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def verify(body: bytes, headers: dict) -> str:
    """Returns the webhook id, or raises ValueError saying which check failed."""
    if not SECRETS:
        raise ValueError("WEBHOOK_SECRET is not set")
    # Standard Webhooks: any configured secret may have signed it (rotation). The
    # library also rejects timestamps more than 5 minutes away.
    errors = []
    for secret in SECRETS:
        try:
            Webhook(secret).verify(body, headers)
            break
        except WebhookVerificationError as e:
            errors.append(str(e))
    else:
        raise ValueError(f"webhook-signature: {errors[-1]}")
    # X-Signature-256, signed with the primary secret.
    expected = "sha256=" + hmac.new(_key(SECRETS[0]), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, headers.get("x-signature-256", "")):
        raise ValueError("x-signature-256 does not match")
    return headers["webhook-id"]


async def _read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send, status: int, text: str):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text.encode()})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        return await _answer(send, 405, "POST only")
    body = await _read_body(receive)
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    try:
        webhook_id = verify(body, headers)
    except ValueError as e:
        # 4xx: hostd dead-letters at once instead of retrying a forgery.
        return await _answer(send, 401, f"rejected: {e}")
    first_seen = await REDIS.set(f"hostd:seen:{webhook_id}", 1, nx=True, ex=DEDUPE_SECONDS)
    if first_seen:
        line = json.dumps({"webhook_id": webhook_id, "event": json.loads(body)})
        if OUT:
            with open(OUT, "a") as f:
                f.write(line + "\n")
        else:
            print(line, flush=True)
    await _answer(send, 200, "ok" if first_seen else "duplicate")
