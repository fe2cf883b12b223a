"""Forward LangChain / LangGraph callback events to hostd without blocking the agent.

    from hostd_langchain import HostdCallbackHandler, hostd_config

    handler = HostdCallbackHandler()            # HOSTD_URL / HOSTD_TOKEN
    await agent.ainvoke(inputs, hostd_config(handler))
    await handler.aflush(timeout=5)
"""

from .config import hostd_config
from .events import ALL_EVENTS, DEFAULT_EVENTS
from .handler import HostdCallbackHandler, HostdSyncCallbackHandler
from .sender import Sender

__all__ = [
    "ALL_EVENTS",
    "DEFAULT_EVENTS",
    "HostdCallbackHandler",
    "HostdSyncCallbackHandler",
    "Sender",
    "hostd_config",
]
