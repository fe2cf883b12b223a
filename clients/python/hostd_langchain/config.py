"""`hostd_config`: the subgraph-safe way to attach a handler."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.runnables import RunnableConfig


def hostd_config(handler: BaseCallbackHandler, config: RunnableConfig | None = None, **fields: Any) -> RunnableConfig:
    """A `RunnableConfig` with `handler` in `config["callbacks"]`, for `invoke` / `ainvoke`.

    Callbacks given at invoke time belong to that run: LangChain hands them to every child
    run (subgraphs, tools, models), and each request can carry its own handler. Existing
    callbacks (a list or a callback manager) are kept; other fields (`configurable`,
    `metadata`, `tags`, `recursion_limit`, ...) pass through.
    """
    merged: dict[str, Any] = dict(config or {})
    merged.update(fields)
    existing = merged.get("callbacks")
    if existing is None:
        merged["callbacks"] = [handler]
    elif isinstance(existing, BaseCallbackManager):
        manager = existing.copy()
        manager.add_handler(handler, inherit=True)
        merged["callbacks"] = manager
    else:
        callbacks = list(existing)
        if handler not in callbacks:
            callbacks.append(handler)
        merged["callbacks"] = callbacks
    return merged  # type: ignore[return-value]
