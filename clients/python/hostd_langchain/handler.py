"""`HostdCallbackHandler` (async) and `HostdSyncCallbackHandler` (sync).

Each `on_*` method does bookkeeping in dicts and puts a `Captured` record on the
sender's queue: no I/O, no await on the network, no JSON. Runs are tracked from their
start callbacks so that every event carries

- `root_run_id`: the top invocation this handler saw (stable across client retries),
- `step`: a counter per root run, in callback order, so `{root_run_id}:{event}:{step}`
  is a stable idempotency key,
- `parent_run_id` and `name` (LangChain ≥ 1.0 passes no `name` to `on_chain_end`, so
  the name comes from the run's `on_chain_start`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Iterable
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler

from .events import ALL_EVENTS, DEFAULT_EVENTS, Captured, is_named_chain
from .sender import Sender, shared_sender

DEFAULT_URL = "http://127.0.0.1:8787"
#: Runs tracked at once; a run that never ends (cancelled mid-flight) is forgotten after this.
MAX_TRACKED_RUNS = 100_000


class _Tracker:
    """The part both handlers share: run bookkeeping and capture."""

    def _setup(self, url: str | None, token: str | None, events: Iterable[str] | None, max_queue: int,
               batch_size: int, flush_interval: float, max_chars: int, sender: Sender | None) -> None:
        url = url or os.environ.get("HOSTD_URL") or DEFAULT_URL
        token = token if token is not None else os.environ.get("HOSTD_TOKEN")
        wanted = DEFAULT_EVENTS if events is None else frozenset(events)
        unknown = sorted(wanted - ALL_EVENTS)
        if unknown:
            raise ValueError(f"unknown event(s) {unknown} in events=; choose from {sorted(ALL_EVENTS)}")
        self.events = wanted
        self.sender = sender or shared_sender(url, token, max_queue=max_queue, batch_size=batch_size,
                                              flush_interval=flush_interval, max_chars=max_chars)
        # run id (.int) -> (root run id, name, parent run id, metadata)
        self._runs: dict[int, tuple[UUID, str | None, UUID | None, dict | None]] = {}
        # root run id (.int) -> step counter
        self._steps: dict[int, itertools.count] = {}
        self._chain_end = "on_chain_end" in wanted
        self._chain_start = "on_chain_start" in wanted

    # ---- bookkeeping ----------------------------------------------------------------
    # Dicts are keyed by `uuid.int`: a UUID's own __hash__ is Python code, an int's is not.

    def _start(self, run_id: UUID, parent_run_id: UUID | None, name: str | None,
               metadata: dict | None) -> UUID:
        parent = self._runs.get(parent_run_id.int) if parent_run_id is not None else None
        # A run whose parent this handler never saw (a handler bound to a subagent only)
        # is a root of its own.
        if parent is None:
            root = run_id
            self._steps[run_id.int] = itertools.count()
        else:
            root = parent[0]
        runs = self._runs
        if len(runs) >= MAX_TRACKED_RUNS:
            runs.clear()
        runs[run_id.int] = (root, name, parent_run_id, metadata)
        return root

    def _emit(self, event: str, run_id: UUID, kind: str, payload: Any, tags: list[str] | None,
              name: str | None = None, end: bool = False) -> None:
        key = run_id.int
        run = self._runs.pop(key, None) if end else self._runs.get(key)
        if run is None:
            root, run_name, parent, metadata = run_id, None, None, None
        else:
            root, run_name, parent, metadata = run
        root_key = root.int
        steps = self._steps.get(root_key)
        if steps is None:
            steps = self._steps[root_key] = itertools.count()
        self.sender.put(Captured(event, name or run_name, run_id, parent, root, next(steps), tags, metadata,
                                 kind, payload))
        if end and root_key == key:
            self._steps.pop(key, None)

    def _end_quietly(self, run_id: UUID) -> None:
        key = run_id.int
        run = self._runs.pop(key, None)
        if run is not None and run[0].int == key:
            self._steps.pop(key, None)

    # ---- callbacks, shared by both handlers --------------------------------------------

    def _on_chain_start(self, serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name")
        self._start(run_id, parent_run_id, name, metadata)
        if self._chain_start and is_named_chain(name, tags):
            self._emit("on_chain_start", run_id, "inputs", inputs, tags)

    def _on_chain_end(self, outputs, run_id, tags) -> None:
        run = self._runs.get(run_id.int)
        if self._chain_end and is_named_chain(run[1] if run else None, tags):
            self._emit("on_chain_end", run_id, "output", outputs, tags, end=True)
        else:
            self._end_quietly(run_id)

    def _on_chain_error(self, error, run_id, tags) -> None:
        if "on_chain_error" in self.events:
            run = self._runs.get(run_id.int)
            if is_named_chain(run[1] if run else None, tags):
                self._emit("on_chain_error", run_id, "error", error, tags, end=True)
                return
        self._end_quietly(run_id)

    def _on_tool_start(self, serialized, input_str, run_id, parent_run_id, tags, metadata, kwargs) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name")
        self._start(run_id, parent_run_id, name, metadata)
        if "on_tool_start" in self.events:
            inputs = kwargs.get("inputs")
            self._emit("on_tool_start", run_id, "input", input_str if inputs is None else inputs, tags)

    def _on_model_start(self, serialized, prompts, run_id, parent_run_id, tags, metadata, kwargs) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name")
        self._start(run_id, parent_run_id, name, metadata)
        if "on_llm_start" in self.events:
            self._emit("on_llm_start", run_id, "prompts", prompts, tags)

    def _on_retriever_start(self, serialized, query, run_id, parent_run_id, tags, metadata, kwargs) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name")
        self._start(run_id, parent_run_id, name, metadata)
        if "on_retriever_start" in self.events:
            self._emit("on_retriever_start", run_id, "query", query, tags)

    def _on_end(self, event: str, kind: str, payload, run_id, tags, name=None) -> None:
        if event in self.events:
            self._emit(event, run_id, kind, payload, tags, name=name, end=True)
        else:
            self._end_quietly(run_id)

    def _on_point(self, event: str, kind: str, payload, run_id, tags, name=None) -> None:
        if event in self.events:
            self._emit(event, run_id, kind, payload, tags, name=name)

    # ---- the sender -----------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """The sender's counters: enqueued, sent, queued, dropped_overflow, rejected,
        retries, batches, last_error (shared by handlers with the same settings)."""
        return self.sender.stats

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Block until every event captured so far reached hostd (or `timeout` passed)."""
        return self.sender.flush(timeout)

    async def aflush(self, timeout: float | None = 5.0) -> bool:
        """`flush` without blocking the event loop: call it in a request's `finally`."""
        return await asyncio.get_running_loop().run_in_executor(None, self.sender.flush, timeout)


_DOC_ARGS = """
    url: hostd's base URL (default `HOSTD_URL`, else http://127.0.0.1:8787).
    token: the tenant's token (default `HOSTD_TOKEN`; none for an unauthenticated local hostd).
    events: the callback names to forward (default `DEFAULT_EVENTS`; see `ALL_EVENTS`).
    max_queue: events held while hostd is slow or down; beyond it the oldest are dropped and counted.
    batch_size / flush_interval: a POST carries up to `batch_size` events or waits at most
        `flush_interval` seconds.
    max_chars: every string in a payload is cut to this many characters before it leaves the process.
"""


class HostdCallbackHandler(_Tracker, AsyncCallbackHandler):
    __doc__ = "Forwards an async agent's callback events to hostd; never awaits the network.\n" + _DOC_ARGS

    def __init__(self, url: str | None = None, token: str | None = None, *, events: Iterable[str] | None = None,
                 max_queue: int = 10_000, batch_size: int = 100, flush_interval: float = 0.25,
                 max_chars: int = 4000, sender: Sender | None = None) -> None:
        self._setup(url, token, events, max_queue, batch_size, flush_interval, max_chars, sender)

    async def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, tags=None, metadata=None,
                             **kwargs) -> None:
        self._on_chain_start(serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs)

    async def on_chain_end(self, outputs, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_chain_end(outputs, run_id, tags)

    async def on_chain_error(self, error, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_chain_error(error, run_id, tags)

    async def on_tool_start(self, serialized, input_str, *, run_id, parent_run_id=None, tags=None, metadata=None,
                            **kwargs) -> None:
        self._on_tool_start(serialized, input_str, run_id, parent_run_id, tags, metadata, kwargs)

    async def on_tool_end(self, output, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_tool_end", "output", output, run_id, tags)

    async def on_tool_error(self, error, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_tool_error", "error", error, run_id, tags)

    async def on_llm_start(self, serialized, prompts, *, run_id, parent_run_id=None, tags=None, metadata=None,
                           **kwargs) -> None:
        self._on_model_start(serialized, prompts, run_id, parent_run_id, tags, metadata, kwargs)

    async def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, tags=None,
                                  metadata=None, **kwargs) -> None:
        self._on_model_start(serialized, messages, run_id, parent_run_id, tags, metadata, kwargs)

    async def on_llm_new_token(self, token, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_point("on_llm_new_token", "token", token, run_id, tags)

    async def on_llm_end(self, response, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_llm_end", "llm_result", response, run_id, tags)

    async def on_llm_error(self, error, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_llm_error", "error", error, run_id, tags)

    async def on_agent_action(self, action, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_point("on_agent_action", "agent_action", action, run_id, tags, name=getattr(action, "tool", None))

    async def on_agent_finish(self, finish, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_point("on_agent_finish", "agent_finish", finish, run_id, tags)

    async def on_retriever_start(self, serialized, query, *, run_id, parent_run_id=None, tags=None, metadata=None,
                                 **kwargs) -> None:
        self._on_retriever_start(serialized, query, run_id, parent_run_id, tags, metadata, kwargs)

    async def on_retriever_end(self, documents, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_retriever_end", "documents", documents, run_id, tags)

    async def on_retriever_error(self, error, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_retriever_error", "error", error, run_id, tags)

    async def on_custom_event(self, name, data, *, run_id, tags=None, metadata=None, **kwargs) -> None:
        self._on_point("on_custom_event", "custom", data, run_id, tags, name=name)


class HostdSyncCallbackHandler(_Tracker, BaseCallbackHandler):
    __doc__ = "Forwards a sync agent's callback events to hostd (same queue and sender).\n" + _DOC_ARGS

    # Cheap and non-blocking, so LangChain may call it inline even from async code
    # instead of hopping to a thread pool per callback.
    run_inline = True

    def __init__(self, url: str | None = None, token: str | None = None, *, events: Iterable[str] | None = None,
                 max_queue: int = 10_000, batch_size: int = 100, flush_interval: float = 0.25,
                 max_chars: int = 4000, sender: Sender | None = None) -> None:
        self._setup(url, token, events, max_queue, batch_size, flush_interval, max_chars, sender)

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, tags=None, metadata=None,
                       **kwargs) -> None:
        self._on_chain_start(serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs)

    def on_chain_end(self, outputs, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_chain_end(outputs, run_id, tags)

    def on_chain_error(self, error, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_chain_error(error, run_id, tags)

    def on_tool_start(self, serialized, input_str, *, run_id, parent_run_id=None, tags=None, metadata=None,
                      **kwargs) -> None:
        self._on_tool_start(serialized, input_str, run_id, parent_run_id, tags, metadata, kwargs)

    def on_tool_end(self, output, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_tool_end", "output", output, run_id, tags)

    def on_tool_error(self, error, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_tool_error", "error", error, run_id, tags)

    def on_llm_start(self, serialized, prompts, *, run_id, parent_run_id=None, tags=None, metadata=None,
                     **kwargs) -> None:
        self._on_model_start(serialized, prompts, run_id, parent_run_id, tags, metadata, kwargs)

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, tags=None, metadata=None,
                            **kwargs) -> None:
        self._on_model_start(serialized, messages, run_id, parent_run_id, tags, metadata, kwargs)

    def on_llm_new_token(self, token, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_point("on_llm_new_token", "token", token, run_id, tags)

    def on_llm_end(self, response, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_llm_end", "llm_result", response, run_id, tags)

    def on_llm_error(self, error, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_llm_error", "error", error, run_id, tags)

    def on_agent_action(self, action, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_point("on_agent_action", "agent_action", action, run_id, tags, name=getattr(action, "tool", None))

    def on_agent_finish(self, finish, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_point("on_agent_finish", "agent_finish", finish, run_id, tags)

    def on_retriever_start(self, serialized, query, *, run_id, parent_run_id=None, tags=None, metadata=None,
                           **kwargs) -> None:
        self._on_retriever_start(serialized, query, run_id, parent_run_id, tags, metadata, kwargs)

    def on_retriever_end(self, documents, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_retriever_end", "documents", documents, run_id, tags)

    def on_retriever_error(self, error, *, run_id, parent_run_id=None, tags=None, **kwargs) -> None:
        self._on_end("on_retriever_error", "error", error, run_id, tags)

    def on_custom_event(self, name, data, *, run_id, tags=None, metadata=None, **kwargs) -> None:
        self._on_point("on_custom_event", "custom", data, run_id, tags, name=name)
