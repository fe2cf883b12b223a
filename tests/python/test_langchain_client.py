"""The Python LangChain client against the real hostd binary, with real LangGraph agents
(a supervisor calling a subagent with two tools) driven by a scripted chat model."""

import asyncio
import json
import pathlib
import sys
import time
import uuid

import httpx
import pytest
from conftest import ROOT, free_port, plugin
from langchain_core.messages import HumanMessage

from hostd_langchain import HostdCallbackHandler, HostdSyncCallbackHandler, hostd_config

sys.path.insert(0, str(ROOT / "examples/langchain"))
import agent as example  # noqa: E402  (examples/langchain/agent.py: the agent the README runs)

TOKEN = "acme-token"
QUESTION = [HumanMessage("What does Ada's plan include?")]


def redacting_config() -> str:
    """Tenant `acme`: the PII-redaction policy, every delivery appended to a JSONL file."""
    return (
        '[server]\ndata_dir = "{dir}/data"\n'
        f'[[tenants]]\nid = "acme"\ntoken_env = "ACME_TOKEN"\npolicy = "{plugin("redact_pii")}"\n'
        '[tenants.routes.default]\ntype = "file"\npath = "{dir}/out.jsonl"\n'
    )


def deliveries(tmp: pathlib.Path, want: int = 0, timeout: float = 20.0) -> list[dict]:
    """The payloads hostd delivered to the file route (waits for at least `want`)."""
    out = tmp / "out.jsonl"
    deadline = time.time() + timeout
    while True:
        lines = out.read_text().splitlines() if out.exists() else []
        if len(lines) >= want or time.time() > deadline:
            return [json.loads(line)["payload"] for line in lines]
        time.sleep(0.05)


def handler_for(url: str, **kw) -> HostdCallbackHandler:
    # A private sender per test (different queue settings would share one otherwise).
    from hostd_langchain import Sender

    sender = Sender(url, kw.pop("token", TOKEN), **{k: kw.pop(k) for k in list(kw) if k in ("max_queue", "batch_size")})
    return HostdCallbackHandler(url, TOKEN, sender=sender, **kw)


@pytest.fixture
def hostd(start_hostd):
    return start_hostd(redacting_config(), {"ACME_TOKEN": TOKEN})


def test_subagent_tool_calls_arrive_with_root_parents_and_steps(hostd, tmp_path):
    handler = handler_for(hostd.url)
    root = uuid.uuid4()
    result = asyncio.run(example.build_supervisor().ainvoke({"messages": QUESTION}, hostd_config(handler, run_id=root)))
    assert result["messages"][-1].content.startswith("Report: Summary:")
    assert handler.flush(timeout=20), handler.stats
    assert handler.stats["sent"] == handler.stats["enqueued"] == 16

    events = [e for e in deliveries(tmp_path, 16) if e["root_run_id"] == str(root)]
    by_kind = [(e["event"], e["name"]) for e in events]
    for tool in ("lookup_customer", "search_docs"):
        assert ("on_tool_start", tool) in by_kind and ("on_tool_end", tool) in by_kind, by_kind
    # Every event of the invocation carries its root; steps are 0..n-1, one per event.
    assert sorted(e["step"] for e in events) == list(range(16))
    assert len({e["idempotency_key"] if "idempotency_key" in e else (e["event"], e["step"]) for e in events}) == 16

    # Parent links: tool → `tools` node → research_agent (the subgraph) → `research` node → supervisor.
    chains = {e["run_id"]: e for e in events if e["event"] == "on_chain_end"}
    top = chains[str(root)]
    assert top["name"] == "supervisor" and top["parent_run_id"] is None
    lookup = next(e for e in events if e["event"] == "on_tool_end" and e["name"] == "lookup_customer")
    path = []
    run = chains[lookup["parent_run_id"]]
    while run["parent_run_id"]:
        path.append(run["name"])
        run = chains[run["parent_run_id"]]
    assert path == ["tools", "research_agent", "research"]
    # Start before end, per tool run.
    for tool_run in {e["run_id"] for e in events if e["event"] == "on_tool_start"}:
        start, end = (next(e["step"] for e in events if e["run_id"] == tool_run and e["event"] == k)
                      for k in ("on_tool_start", "on_tool_end"))
        assert start < end

    # The tenant's policy redacted the CRM answer before it left hostd; llm_end summarised.
    assert "ada@example.com" not in json.dumps(events)
    assert "[REDACTED:email]" in json.dumps(lookup["data"])
    llm = next(e for e in events if e["event"] == "on_llm_end")
    assert llm["data"]["model"] == "scripted-1" and llm["data"]["token_usage"]["output_tokens"] == 7
    # Named chains only: no RunnableSequence / RunnableLambda / channel writes.
    assert not [n for (k, n) in by_kind if k == "on_chain_end" and n.startswith(("Runnable", "ChannelWrite", "_"))]


def test_custom_event_from_a_tool_arrives_with_its_name_and_data(hostd, tmp_path):
    handler = handler_for(hostd.url)
    asyncio.run(example.build_supervisor().ainvoke({"messages": QUESTION}, hostd_config(handler)))
    assert handler.flush(timeout=20)
    events = deliveries(tmp_path, 16)
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert len(custom) == 1
    assert custom[0]["name"] == "progress"
    assert custom[0]["data"] == {"stage": "searching", "query": "What does Ada's plan include?", "percent": 50}
    search = next(e for e in events if e["event"] == "on_tool_start" and e["name"] == "search_docs")
    assert custom[0]["run_id"] == search["run_id"] and custom[0]["root_run_id"] == search["root_run_id"]


def test_with_config_on_this_version(hostd, tmp_path):
    """What `.with_config(callbacks=...)` really does on the installed langchain-core /
    langgraph under Python ≥ 3.11 (README: "config['callbacks'] vs .with_config")."""
    assert sys.version_info >= (3, 11)
    # (1) Bound on the top graph: the run's callback manager reaches the subgraph through
    #     contextvars, so the subagent's tools ARE seen, under the top run's root.
    top = handler_for(hostd.url)
    asyncio.run(example.build_supervisor().with_config(callbacks=[top]).ainvoke({"messages": QUESTION}))
    assert top.flush(timeout=20)
    # (2) Bound on the subagent at definition time (the P28 shape): the handler sees only
    #     the subagent; its events start a root of their own, the supervisor's run is
    #     invisible, and there is no supervisor end event.
    sub = handler_for(hostd.url)
    research = example.build_research_agent().with_config(callbacks=[sub])
    asyncio.run(example.build_supervisor(research).ainvoke({"messages": QUESTION}))
    assert sub.flush(timeout=20)

    events = deliveries(tmp_path, 16 + 13)
    roots = {}
    for e in events:
        roots.setdefault(e["root_run_id"], []).append(e)
    assert len(roots) == 2, {r: len(v) for r, v in roots.items()}
    full, partial = sorted(roots.values(), key=len, reverse=True)
    assert len(full) == 16 and {"lookup_customer", "search_docs"} <= {e["name"] for e in full if e["event"] == "on_tool_end"}
    names = {e["name"] for e in partial if e["event"] == "on_chain_end"}
    assert "research_agent" in names and "supervisor" not in names and "research" not in names
    root_event = next(e for e in partial if e["run_id"] == e["root_run_id"])
    # Its parent is the supervisor's `research` node, a run this handler never saw.
    assert root_event["name"] == "research_agent"
    assert root_event["parent_run_id"] not in {e["run_id"] for e in events}
    assert {"lookup_customer", "search_docs"} <= {e["name"] for e in partial if e["event"] == "on_tool_end"}


def test_hostd_down_then_started_within_60s_gets_every_event(start_hostd, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    handler = handler_for(url)
    supervisor = example.build_supervisor()

    async def run_agent():
        t0 = time.perf_counter()
        await supervisor.ainvoke({"messages": QUESTION}, hostd_config(handler))
        return time.perf_counter() - t0

    elapsed = asyncio.run(run_agent())
    # The agent finished while nothing was reachable: no callback waited for the network.
    stats = handler.stats
    assert stats["sent"] == 0 and stats["enqueued"] == 16, stats
    print(f"agent wall time with hostd down: {elapsed * 1000:.1f} ms")
    time.sleep(1.0)
    assert handler.stats["retries"] >= 1 and "ConnectError" in handler.stats["last_error"]

    start_hostd(redacting_config(), {"ACME_TOKEN": TOKEN}, listen=f"127.0.0.1:{port}")
    assert handler.flush(timeout=60), handler.stats
    assert handler.stats["sent"] == 16
    assert len(deliveries(tmp_path, 16)) == 16


def test_tiny_queue_overflow_is_counted_and_reported(start_hostd, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    handler = handler_for(url, max_queue=4, batch_size=4)
    supervisor = example.build_supervisor()
    for _ in range(3):
        asyncio.run(supervisor.ainvoke({"messages": QUESTION}, hostd_config(handler)))
    stats = handler.stats
    assert stats["enqueued"] == 48 and stats["dropped_overflow"] > 0, stats
    assert stats["queued"] <= 4

    start_hostd(redacting_config(), {"ACME_TOKEN": TOKEN}, listen=f"127.0.0.1:{port}")
    assert handler.flush(timeout=60), handler.stats
    stats = handler.stats
    assert stats["sent"] + stats["dropped_overflow"] == 48, stats
    events = deliveries(tmp_path, stats["sent"] + 1)
    reports = [e for e in events if e["event"] == "client_overflow"]
    assert sum(r["data"]["dropped"] for r in reports) == stats["dropped_overflow"]
    assert reports[-1]["data"]["dropped_total"] == stats["dropped_overflow"]
    # The newest events survive: the last invocation's supervisor end is there.
    assert any(e["event"] == "on_chain_end" and e["name"] == "supervisor" for e in events)


def test_bad_token_is_refused_and_counted_not_raised(hostd):
    from hostd_langchain import Sender

    handler = HostdCallbackHandler(hostd.url, "wrong", sender=Sender(hostd.url, "wrong"))
    asyncio.run(example.build_supervisor().ainvoke({"messages": QUESTION}, hostd_config(handler)))
    assert handler.flush(timeout=20)
    stats = handler.stats
    assert stats["rejected"] == 16 and stats["sent"] == 0
    assert "HTTP 401" in stats["last_error"], stats


def test_sync_agent_with_the_sync_handler(hostd, tmp_path):
    """`create_agent` (langchain 1.x) run synchronously, with sync tools."""
    from langchain.agents import create_agent
    from langchain_core.callbacks import dispatch_custom_event
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        dispatch_custom_event("progress", {"op": "add"})
        return a + b

    def script(messages):
        from langchain_core.messages import AIMessage, ToolMessage

        if not any(isinstance(m, ToolMessage) for m in messages):
            return AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}])
        return AIMessage(content=f"The sum is {messages[-1].content}")

    agent = create_agent(example.ScriptedChatModel(script=script), tools=[add], name="calculator")
    from hostd_langchain import Sender

    handler = HostdSyncCallbackHandler(hostd.url, TOKEN, sender=Sender(hostd.url, TOKEN))
    root = uuid.uuid4()
    result = agent.invoke({"messages": [HumanMessage("2+3?")]}, hostd_config(handler, run_id=root))
    assert result["messages"][-1].content == "The sum is 5"
    assert handler.flush(timeout=20)
    n = handler.stats["sent"]
    events = deliveries(tmp_path, n)
    assert {e["root_run_id"] for e in events} == {str(root)}
    kinds = [(e["event"], e["name"]) for e in events]
    assert ("on_tool_end", "add") in kinds and ("on_custom_event", "progress") in kinds
    assert ("on_chain_end", "calculator") in kinds
    assert sorted(e["step"] for e in events) == list(range(n))


def test_events_filter(hostd, tmp_path):
    handler = handler_for(hostd.url, events=["on_tool_end"])
    asyncio.run(example.build_supervisor().ainvoke({"messages": QUESTION}, hostd_config(handler)))
    assert handler.flush(timeout=20)
    events = deliveries(tmp_path, 2)
    assert [e["event"] for e in events] == ["on_tool_end", "on_tool_end"]
    with pytest.raises(ValueError, match="on_tool_ended"):
        HostdCallbackHandler(hostd.url, events=["on_tool_ended"])


def test_string_cap_applies_before_events_leave_the_process(hostd, tmp_path):
    from hostd_langchain import Sender

    handler = HostdCallbackHandler(sender=Sender(hostd.url, TOKEN, max_chars=12), events=["on_tool_end"])
    asyncio.run(example.build_supervisor().ainvoke({"messages": QUESTION}, hostd_config(handler)))
    assert handler.flush(timeout=20)
    for e in deliveries(tmp_path, 2):
        content = e["data"]["output"]["content"]
        assert len(content) <= 13 and content.endswith("…"), content


def test_fastapi_example_flushes_inside_the_request(hostd, tmp_path, monkeypatch):
    """examples/langchain/server.py: the agent runs inside the request and `aflush` in
    `finally` means hostd has every event before the response is sent (no BackgroundTasks)."""
    monkeypatch.setenv("HOSTD_URL", hostd.url)
    monkeypatch.setenv("HOSTD_TOKEN", TOKEN)
    import server

    async def call():
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.post("/chat", json={"message": "What does Ada's plan include?"})

    response = asyncio.run(call())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"].startswith("Report: Summary:")
    assert body["hostd"]["flushed"] is True
    root = body["run_id"]
    events = [e for e in deliveries(tmp_path, 16) if e["root_run_id"] == root]
    assert len(events) == 16
