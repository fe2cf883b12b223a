"""The background sender: one daemon thread per (url, token, queue settings) that
batches captured events and posts them to hostd as NDJSON.

The agent's side is `Sender.put`: a lock, a deque append and, when a batch is full, an
event set — no I/O, no serialization, never a wait. When the queue is full the *oldest*
events are dropped and counted; the count travels to hostd in the next batch as a
`client_overflow` event and shows in `stats`.
"""

from __future__ import annotations

import atexit
import collections
import email.utils
import json
import logging
import random
import threading
import time
import uuid
import weakref
from typing import Any

import httpx

from .events import Captured, to_json

log = logging.getLogger("hostd_langchain")

USER_AGENT = "hostd-langchain/0.1"
#: Statuses worth sending again: hostd is starting, draining or shedding load.
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
RETRY_AFTER_MAX = 60.0

_senders: dict[tuple, "Sender"] = {}
_senders_lock = threading.Lock()


def shared_sender(url: str, token: str | None, *, max_queue: int, batch_size: int, flush_interval: float,
                  max_chars: int) -> "Sender":
    """The process's sender for these settings, started on first use. Handlers made per
    request share it, so a busy server has one thread and one connection pool, not one
    per request."""
    key = (url, token, max_queue, batch_size, flush_interval, max_chars)
    with _senders_lock:
        sender = _senders.get(key)
        if sender is None or sender.closed:
            sender = Sender(url, token, max_queue=max_queue, batch_size=batch_size,
                            flush_interval=flush_interval, max_chars=max_chars)
            _senders[key] = sender
        return sender


class Sender:
    def __init__(self, url: str, token: str | None = None, *, max_queue: int = 10_000, batch_size: int = 100,
                 flush_interval: float = 0.25, max_chars: int = 4000, timeout: float = 10.0) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be ≥ 1, got {max_queue}")
        if not 1 <= batch_size <= 10_000:
            raise ValueError(f"batch_size must be in 1..10000, got {batch_size}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {flush_interval}")
        if max_chars < 1:
            raise ValueError(f"max_chars must be ≥ 1, got {max_chars}")
        self.endpoint = url.rstrip("/") + "/v1/events"
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_chars = max_chars
        self.closed = False
        self._headers = {"content-type": "application/x-ndjson", "user-agent": USER_AGENT}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._queue: collections.deque[Captured] = collections.deque()
        self._lock = threading.Lock()
        self._done_cond = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._flushing = 0  # flush() calls waiting
        # Counters: enqueued = done + queued + in flight, always.
        self._enqueued = 0
        self._done = 0
        self._sent = 0
        self._dropped = 0
        self._dropped_unreported = 0
        self._rejected = 0
        self._retries = 0
        self._batches = 0
        self._last_error: str | None = None
        # A client_overflow report is an event of its own: a root of its own, a step per report.
        self._overflow_root = f"hostd-client-{uuid.uuid4()}"
        self._overflow_step = 0
        self._thread = threading.Thread(target=self._run, name="hostd-sender", daemon=True)
        self._thread.start()
        atexit.register(_flush_at_exit, weakref.ref(self))

    # ---- the agent's side -------------------------------------------------------------

    def put(self, item: Captured) -> None:
        """Queue one event. Never blocks on I/O; drops the oldest when full."""
        with self._lock:
            queue = self._queue
            if len(queue) >= self.max_queue:
                queue.popleft()
                self._dropped += 1
                self._dropped_unreported += 1
                self._done += 1
            queue.append(item)
            self._enqueued += 1
            full = len(queue) >= self.batch_size
        if full and not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every event queued before this call was sent (or dropped or refused);
        True if that happened within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._enqueued
            self._flushing += 1
            self._wake.set()
            try:
                while self._done < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._done_cond.wait(remaining)
                return True
            finally:
                self._flushing -= 1

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "enqueued": self._enqueued,
                "sent": self._sent,
                "queued": len(self._queue),
                "dropped_overflow": self._dropped,
                "rejected": self._rejected,
                "retries": self._retries,
                "batches": self._batches,
                "last_error": self._last_error,
            }

    def close(self, timeout: float = 5.0) -> bool:
        flushed = self.flush(timeout)
        self.closed = True
        self._wake.set()
        return flushed

    # ---- the sender thread ------------------------------------------------------------

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, headers=self._headers) as client:
            while not self.closed:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                # Send what is queued, then keep going only while full batches wait (or a
                # flush asks for everything): partial batches wait for the next interval,
                # so a busy agent gets few large POSTs rather than many small ones.
                while True:
                    batch, overflow = self._take()
                    if not batch and not overflow:
                        break
                    try:
                        self._deliver(client, batch, overflow)
                    except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                        log.exception("hostd sender: unexpected error; %d events dropped", len(batch))
                        self._finish(len(batch), rejected=len(batch), error=f"unexpected: {exc!r}")
                    if len(self._queue) < self.batch_size and not self._flushing:
                        break

    def _take(self) -> tuple[list[Captured], int]:
        with self._lock:
            n = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            overflow, self._dropped_unreported = self._dropped_unreported, 0
            return batch, overflow

    def _deliver(self, client: httpx.Client, batch: list[Captured], overflow: int) -> None:
        max_chars = self.max_chars
        lines = [to_json(item, max_chars) for item in batch]
        if overflow:
            lines.append(json.dumps(self._overflow_event(overflow), separators=(",", ":")))
        self._post_lines(client, lines, counted=len(batch))

    def _overflow_event(self, dropped: int) -> dict[str, Any]:
        self._overflow_step += 1
        return {
            "event": "client_overflow",
            "name": "hostd_langchain",
            "run_id": str(uuid.uuid4()),
            "root_run_id": self._overflow_root,
            "step": self._overflow_step,
            "data": {"dropped": dropped, "dropped_total": self._dropped, "max_queue": self.max_queue},
            "ts": int(time.time() * 1000),
        }

    def _post_lines(self, client: httpx.Client, lines: list[str], counted: int) -> None:
        """Post until hostd answers: retry connection errors, 408/429/5xx with backoff
        and Retry-After; split a batch hostd refuses (400/413) to isolate the bad event."""
        body = ("\n".join(lines) + "\n").encode()
        delay = BACKOFF_FIRST
        attempt = 0
        while True:
            attempt += 1
            try:
                response = client.post(self.endpoint, content=body)
            except httpx.HTTPError as exc:
                wait, error = delay, f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._finish(counted, sent=counted)
                    return
                error = f"HTTP {status}: {response.text[:500]}"
                if status in (400, 413) and len(lines) > 1:
                    half = len(lines) // 2
                    first_counted = min(counted, half)
                    self._post_lines(client, lines[:half], first_counted)
                    self._post_lines(client, lines[half:], counted - first_counted)
                    return
                if status not in RETRYABLE:
                    log.error("hostd refused %d event(s) for good: %s", len(lines), error)
                    self._finish(counted, rejected=counted, error=error)
                    return
                wait = max(delay, _retry_after(response.headers.get("retry-after")) or 0.0)
            with self._lock:
                self._retries += 1
                self._last_error = error
            # One warning per failing batch, then quiet: hostd may be down for a while.
            (log.warning if attempt == 1 else log.debug)("hostd: %s; retrying in %.2fs", error, wait)
            time.sleep(wait * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    def _finish(self, n: int, *, sent: int = 0, rejected: int = 0, error: str | None = None) -> None:
        with self._lock:
            self._done += n
            self._sent += sent
            self._rejected += rejected
            self._batches += 1
            if error:
                self._last_error = error
            self._done_cond.notify_all()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at 60 s."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def _flush_at_exit(ref: "weakref.ref[Sender]") -> None:
    sender = ref()
    if sender is not None and not sender.closed:
        if not sender.flush(timeout=5.0):
            log.warning("hostd: exiting with %d event(s) not sent", sender.stats["queued"])
