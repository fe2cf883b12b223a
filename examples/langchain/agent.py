"""A LangGraph supervisor that hands work to a research subagent with two tools.

No LLM: `ScriptedChatModel` is a real `BaseChatModel` that decides its tool calls from
the conversation, so the graph, the `ToolNode`, the callbacks and the subgraph are all
the real LangChain / LangGraph code paths.

    python examples/langchain/agent.py          # against `make run`'s hostd on :8787
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable

from langchain_core.callbacks import adispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

Script = Callable[[list[BaseMessage]], AIMessage]


class ScriptedChatModel(BaseChatModel):
    """A chat model whose answer is a function of the messages so far.

    The stock fake chat models do not implement `bind_tools`; this one returns itself,
    so `create_agent`, `ToolNode` graphs and supervisors run unchanged.
    """

    script: Script
    model_name: str = "scripted-1"

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        message = self.script(messages)
        message.usage_metadata = {"input_tokens": 12 * len(messages), "output_tokens": 7, "total_tokens": 12 * len(messages) + 7}
        message.response_metadata = {"model_name": self.model_name}
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": self.model_name})


def research_script(messages: list[BaseMessage]) -> AIMessage:
    """First turn: call both tools at once. Once their results are in: answer."""
    results = [m for m in messages if isinstance(m, ToolMessage)]
    if not results:
        question = str(messages[-1].content)
        return AIMessage(
            content="",
            tool_calls=[
                {"name": "lookup_customer", "args": {"customer": "Ada"}, "id": "call_lookup"},
                {"name": "search_docs", "args": {"query": question}, "id": "call_search"},
            ],
        )
    return AIMessage(content="Summary: " + " | ".join(str(r.content) for r in results))


@tool
async def lookup_customer(customer: str) -> str:
    """Look a customer up in the CRM."""
    return f"{customer}: ada@example.com, +1 415-555-2671, plan=enterprise"


@tool
async def search_docs(query: str) -> str:
    """Search the knowledge base, reporting progress as it goes."""
    await adispatch_custom_event("progress", {"stage": "searching", "query": query, "percent": 50})
    return f"3 documents about {query!r}"


RESEARCH_TOOLS = [lookup_customer, search_docs]


def build_research_agent(model: BaseChatModel | None = None):
    """The subagent: model → tools → model, compiled as its own graph."""
    model = (model or ScriptedChatModel(script=research_script)).bind_tools(RESEARCH_TOOLS)

    async def call_model(state: MessagesState) -> dict:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(RESEARCH_TOOLS))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    return graph.compile(name="research_agent")


def build_supervisor(research_agent: Any | None = None):
    """The top agent: a node that delegates to the research subagent, then reports."""
    research_agent = research_agent or build_research_agent()

    async def delegate(state: MessagesState) -> dict:
        # No config passed by hand: on Python ≥ 3.11 the callbacks of this run reach the
        # subgraph through contextvars (3.10 needs `config` threaded through explicitly).
        result = await research_agent.ainvoke({"messages": [state["messages"][-1]]})
        return {"messages": [result["messages"][-1]]}

    async def report(state: MessagesState) -> dict:
        return {"messages": [AIMessage(content="Report: " + str(state["messages"][-1].content))]}

    graph = StateGraph(MessagesState)
    graph.add_node("research", delegate)
    graph.add_node("report", report)
    graph.add_edge(START, "research")
    graph.add_edge("research", "report")
    graph.add_edge("report", END)
    return graph.compile(name="supervisor")


async def main() -> None:
    from hostd_langchain import HostdCallbackHandler, hostd_config

    handler = HostdCallbackHandler(os.environ.get("HOSTD_URL", "http://127.0.0.1:8787"))
    supervisor = build_supervisor()
    try:
        result = await supervisor.ainvoke(
            {"messages": [HumanMessage("What does Ada's plan include?")]}, hostd_config(handler)
        )
        print(result["messages"][-1].content)
    finally:
        flushed = await handler.aflush(timeout=5)
    print(f"hostd: flushed={flushed} stats={handler.stats}")


if __name__ == "__main__":
    asyncio.run(main())
