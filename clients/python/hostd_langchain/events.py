"""The event taxonomy and the conversion of callback payloads into compact JSON.

Callbacks only capture references (see `handler.py`); `to_wire` runs on the sender
thread, so building JSON, truncating strings and summarising LLM results never costs
the agent's own thread or event loop.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any
from uuid import UUID

#: What `HostdCallbackHandler` forwards by default: the signal, not the noise (no
#: per-token events, no start of every inner runnable).
DEFAULT_EVENTS = frozenset(
    {
        "on_tool_start",
        "on_tool_end",
        "on_tool_error",
        "on_chain_end",
        "on_llm_end",
        "on_agent_action",
        "on_agent_finish",
        "on_retriever_end",
        "on_custom_event",
    }
)

#: Every event the handler can forward (`events=` picks from these).
ALL_EVENTS = DEFAULT_EVENTS | {
    "on_chain_start",
    "on_chain_error",
    "on_llm_start",
    "on_llm_new_token",
    "on_llm_error",
    "on_retriever_start",
    "on_retriever_error",
}

#: Tag LangGraph / LangChain put on internal runs that tracing UIs hide.
HIDDEN_TAG = "langsmith:hidden"

#: Names LangChain gives runnables nobody named: inner LCEL steps, not stages.
_GENERIC_PREFIXES = ("Runnable", "ChannelWrite", "ChannelRead", "_")

MAX_DEPTH = 12
MAX_ITEMS = 200


def is_named_chain(name: str | None, tags: list[str] | None) -> bool:
    """A chain worth an `on_chain_end`: a graph, a node, a subagent or a runnable someone
    named — not a `RunnableLambda`, `RunnableSequence`, `RunnableParallel<...>`, channel
    write or other unnamed inner step."""
    if not name or name.startswith(_GENERIC_PREFIXES):
        return False
    return not (tags and HIDDEN_TAG in tags)


@dataclasses.dataclass(slots=True)
class Captured:
    """One callback, as captured on the agent's thread: references only, no copying."""

    event: str
    name: str | None
    run_id: UUID
    parent_run_id: UUID | None
    root_run_id: UUID
    step: int
    tags: list[str] | None
    metadata: dict[str, Any] | None
    kind: str  # how to turn `payload` into `data` (see `_DATA`)
    payload: Any
    ts: float = dataclasses.field(default_factory=time.time)


def _envelope(c: Captured, tags: list, metadata: dict, data: Any) -> dict[str, Any]:
    return {
        "event": c.event,
        "name": c.name,
        "run_id": str(c.run_id),
        "parent_run_id": str(c.parent_run_id) if c.parent_run_id else None,
        "root_run_id": str(c.root_run_id),
        "step": c.step,
        "tags": tags,
        "metadata": metadata,
        "data": data,
        "ts": int(c.ts * 1000),
    }


def to_wire(c: Captured, max_chars: int) -> dict[str, Any]:
    """The hostd wire event for one captured callback, every string capped."""
    tags = [str(t)[:max_chars] for t in c.tags] if c.tags else []
    return _envelope(c, tags, user_metadata(c.metadata, max_chars), _DATA[c.kind](c.payload, max_chars))


def to_json(c: Captured, max_chars: int) -> str:
    """`to_wire` as one line of JSON, fast.

    Fast path: the C encoder over the raw payload (messages, UUIDs and models converted
    by `default`); when the whole line is at most `max_chars` long, no string in it can
    be longer, so it is sent as is. Otherwise (or if the payload will not encode) the
    event is rebuilt with `compact`, which cuts every string."""
    if c.kind in _RAW:
        wire = _envelope(c, c.tags or [], _user_keys(c.metadata), _RAW[c.kind](c.payload))
        try:
            line = _dumps(wire, default=_default)
        except (TypeError, ValueError, RecursionError):
            line = None
        if line is not None and len(line) <= max_chars:
            return line
    return _dumps(to_wire(c, max_chars), default=str)


def _dumps(value: Any, default) -> str:
    return json.dumps(value, default=default, separators=(",", ":"), ensure_ascii=False, check_circular=False)


def _default(value: Any) -> Any:
    """What the C encoder cannot encode itself, on the fast path (no depth limit)."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return _compact_other(value, 1 << 30, 0)


_RAW = {
    "output": lambda p: {"output": p},
    "input": lambda p: {"input": p},
    "inputs": lambda p: {"inputs": p},
    "token": lambda p: {"token": p},
    "query": lambda p: {"query": p},
    "custom": lambda p: p,
}


def compact(value: Any, max_chars: int, depth: int = 0) -> Any:
    """JSON-safe copy of `value` with every string cut to `max_chars` characters, lists
    cut to 200 items and nesting to 12 levels; messages, documents and pydantic models
    become plain dicts; anything else becomes its `str`."""
    t = type(value)
    if t is str:
        return value if len(value) <= max_chars else value[:max_chars] + "…"
    if value is None or t is int or t is float or t is bool:
        return value
    if depth >= MAX_DEPTH:
        return "…"
    if t is dict:
        return {(k if type(k) is str and len(k) <= max_chars else compact(str(k), max_chars)): compact(v, max_chars, depth + 1)
                for k, v in value.items()}
    if t is list or t is tuple:
        out = [compact(v, max_chars, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out.append(f"… {len(value) - MAX_ITEMS} more")
        return out
    return _compact_other(value, max_chars, depth)


def _compact_other(value: Any, max_chars: int, depth: int) -> Any:
    if isinstance(value, str):
        return compact(str(value), max_chars)
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return compact(dict(value), max_chars, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return compact(list(value), max_chars, depth)
    if isinstance(value, UUID):
        return str(value)
    message = _message(value, max_chars, depth)
    if message is not None:
        return message
    if hasattr(value, "page_content"):  # a retriever Document
        return {
            "page_content": compact(value.page_content, max_chars, depth + 1),
            "metadata": compact(getattr(value, "metadata", {}), max_chars, depth + 1),
        }
    if hasattr(value, "model_dump"):
        try:
            return compact(value.model_dump(), max_chars, depth + 1)
        except Exception:  # noqa: BLE001 - a model that cannot dump itself is sent as text
            pass
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": compact(str(value), max_chars)}
    return compact(str(value), max_chars)


def user_metadata(metadata: dict[str, Any] | None, max_chars: int) -> dict[str, Any]:
    """The run's metadata without the bookkeeping LangGraph and LangSmith add to every
    run (`langgraph_step`, `langgraph_triggers`, `checkpoint_ns`, `ls_model_name`, ...);
    `langgraph_node` stays: it says which node ran."""
    kept = _user_keys(metadata)
    return compact(kept, max_chars) if kept else kept


def _user_keys(metadata: dict[str, Any] | None) -> dict[str, Any]:
    if not metadata:
        return {}
    return {k: v for k, v in metadata.items() if k == "langgraph_node" or not str(k).startswith(_INTERNAL_METADATA)}


_INTERNAL_METADATA = ("langgraph_", "checkpoint_", "ls_", "__")


def _message(value: Any, max_chars: int, depth: int) -> dict[str, Any] | None:
    """A LangChain message as `{type, content, ...}` (tool calls, tool call id, status)."""
    kind = getattr(value, "type", None)
    if not isinstance(kind, str) or not hasattr(value, "content"):
        return None
    out: dict[str, Any] = {"type": kind, "content": compact(value.content, max_chars, depth + 1)}
    for field in ("name", "tool_call_id", "status", "id"):
        v = getattr(value, field, None)
        if v:
            out[field] = compact(v, max_chars, depth + 1)
    tool_calls = getattr(value, "tool_calls", None)
    if tool_calls:
        out["tool_calls"] = compact(tool_calls, max_chars, depth + 1)
    return out


def _llm_result(result: Any, max_chars: int) -> dict[str, Any]:
    """`on_llm_end`: model name, token usage, final text and tool calls."""
    out: dict[str, Any] = {}
    llm_output = getattr(result, "llm_output", None) or {}
    generations = [g for batch in getattr(result, "generations", None) or [] for g in batch]
    first = generations[0] if generations else None
    message = getattr(first, "message", None)
    response_metadata = getattr(message, "response_metadata", None) or {}
    model = llm_output.get("model_name") or llm_output.get("model") or response_metadata.get("model_name")
    if model:
        out["model"] = compact(model, max_chars)
    usage = getattr(message, "usage_metadata", None) or llm_output.get("token_usage") or llm_output.get("usage")
    if usage:
        out["token_usage"] = compact(dict(usage), max_chars)
    if first is not None:
        out["text"] = compact(getattr(first, "text", ""), max_chars)
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        out["tool_calls"] = compact(tool_calls, max_chars)
    if len(generations) > 1:
        out["generations"] = len(generations)
    return out


def _error(error: Any, max_chars: int) -> dict[str, Any]:
    return {"error": {"type": type(error).__name__, "message": compact(str(error), max_chars)}}


def _agent_action(action: Any, max_chars: int) -> dict[str, Any]:
    return {
        "tool": compact(getattr(action, "tool", None), max_chars),
        "tool_input": compact(getattr(action, "tool_input", None), max_chars),
        "log": compact(getattr(action, "log", None), max_chars),
    }


def _agent_finish(finish: Any, max_chars: int) -> dict[str, Any]:
    return {
        "return_values": compact(getattr(finish, "return_values", None), max_chars),
        "log": compact(getattr(finish, "log", None), max_chars),
    }


_DATA = {
    "output": lambda p, n: {"output": compact(p, n)},
    "input": lambda p, n: {"input": compact(p, n)},
    "inputs": lambda p, n: {"inputs": compact(p, n)},
    "prompts": lambda p, n: {"prompts": compact(p, n)},
    "token": lambda p, n: {"token": compact(p, n)},
    "documents": lambda p, n: {"documents": compact(p, n)},
    "query": lambda p, n: {"query": compact(p, n)},
    "llm_result": _llm_result,
    "error": _error,
    "agent_action": _agent_action,
    "agent_finish": _agent_finish,
    "custom": lambda p, n: compact(p, n),
}
