"""Unit tests of the sender and the event conversion, against an in-process HTTP stub."""

import http.server
import json
import threading
import time
import uuid

import pytest

from hostd_langchain import HostdCallbackHandler, Sender, hostd_config
from hostd_langchain.events import Captured, compact, is_named_chain, to_wire
from hostd_langchain.sender import _retry_after


class Stub:
    """Answers each POST with the next scripted (status, headers, body); records bodies."""

    def __init__(self, script=()):
        self.script = list(script)
        self.bodies = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                lines = [json.loads(x) for x in body.decode().splitlines()]
                status, headers = stub.script.pop(0) if stub.script else (202, {})
                if callable(status):
                    status = status(lines)
                stub.bodies.append((status, lines, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self):
        return [e for status, lines, _ in self.bodies if status == 202 for e in lines]


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.server.shutdown()


def captured(i: int, payload="x") -> Captured:
    rid = uuid.uuid4()
    return Captured("on_custom_event", "n", rid, None, rid, i, None, None, "custom", payload)


def test_batches_ndjson_with_token(stub):
    sender = Sender(stub.url, "tok", batch_size=10, flush_interval=0.05)
    for i in range(25):
        sender.put(captured(i, {"i": i}))
    assert sender.flush(5)
    assert [e["data"]["i"] for e in stub.accepted()] == list(range(25))
    assert all(len(lines) <= 10 for _, lines, _ in stub.bodies)
    headers = stub.bodies[0][2]
    assert headers["authorization"] == "Bearer tok" and headers["content-type"] == "application/x-ndjson"
    assert sender.stats["sent"] == 25 and sender.stats["queued"] == 0


def test_retry_after_on_503_then_success(stub):
    stub.script = [(503, {"retry-after": "0"}), (429, {"retry-after": "0"}), (500, {})]
    sender = Sender(stub.url, batch_size=5, flush_interval=0.05)
    for i in range(5):
        sender.put(captured(i))
    assert sender.flush(10)
    # The same batch was sent four times: same events, same steps, so the same keys.
    assert [len(lines) for _, lines, _ in stub.bodies] == [5, 5, 5, 5]
    assert stub.bodies[0][1] == stub.bodies[3][1]
    assert sender.stats["retries"] == 3 and sender.stats["sent"] == 5


def test_a_refused_event_is_isolated_and_the_rest_delivered(stub):
    def refuse_bad(lines):
        return 400 if any(e["data"] == "bad" for e in lines) else 202

    stub.script = [(refuse_bad, {})] * 20
    sender = Sender(stub.url, batch_size=8, flush_interval=0.05)
    for i in range(8):
        sender.put(captured(i, "bad" if i == 5 else "ok"))
    assert sender.flush(10)
    assert sorted(e["step"] for e in stub.accepted()) == [0, 1, 2, 3, 4, 6, 7]
    assert sender.stats["rejected"] == 1 and sender.stats["sent"] == 7
    assert "HTTP 400" in sender.stats["last_error"]


def test_overflow_drops_oldest_and_reports_it(stub):
    stub.server.shutdown()  # nothing answers until a new stub takes over: use a dead port
    sender = Sender("http://127.0.0.1:9", max_queue=3, batch_size=3, flush_interval=10)
    for i in range(10):
        sender.put(captured(i))
    stats = sender.stats
    assert stats["dropped_overflow"] == 7 and stats["queued"] == 3 and stats["enqueued"] == 10
    live = Stub()
    sender.endpoint = live.url + "/v1/events"
    assert sender.flush(10)
    events = live.accepted()
    assert [e["step"] for e in events if e["event"] != "client_overflow"] == [7, 8, 9]
    report = next(e for e in events if e["event"] == "client_overflow")
    assert report["data"] == {"dropped": 7, "dropped_total": 7, "max_queue": 3}
    live.server.shutdown()


def test_put_never_waits_for_a_dead_hostd():
    sender = Sender("http://127.0.0.1:9", flush_interval=0.01)
    t0 = time.perf_counter()
    for i in range(1000):
        sender.put(captured(i))
    # Generous bound: 1000 puts against a dead endpoint take milliseconds, a connect would take far longer.
    assert time.perf_counter() - t0 < 1.0
    assert sender.flush(0.2) is False
    sender.close(timeout=0)  # no 5 s atexit flush against the dead port


def test_compact_caps_strings_lists_and_depth():
    deep = current = {}
    for _ in range(20):
        current["d"] = {}
        current = current["d"]
    out = compact({"s": "x" * 50, "l": list(range(300)), "deep": deep, "u": uuid.UUID(int=1), "e": ValueError("no")}, 10)
    assert out["s"] == "x" * 10 + "…"
    assert len(out["l"]) == 201 and out["l"][-1] == "… 100 more"
    assert json.dumps(out["deep"]).count("{") <= 12
    assert out["u"] == "00000000-0000-0000-0000-000000000001"
    assert out["e"] == {"type": "ValueError", "message": "no"}


def test_wire_event_shape():
    rid, parent = uuid.uuid4(), uuid.uuid4()
    c = Captured("on_tool_end", "lookup", rid, parent, parent, 3, ["t"], {"user": "u1"}, "output", "result")
    wire = to_wire(c, 4000)
    assert wire["event"] == "on_tool_end" and wire["run_id"] == str(rid) and wire["root_run_id"] == str(parent)
    assert wire["step"] == 3 and wire["data"] == {"output": "result"} and wire["metadata"] == {"user": "u1"}
    assert isinstance(wire["ts"], int)


def test_named_chains():
    assert is_named_chain("research_agent", ["seq:step:1"])
    assert not is_named_chain(None, None)
    for generic in ("RunnableSequence", "RunnableLambda", "RunnableParallel<a,b>", "ChannelWrite<x>", "_write"):
        assert not is_named_chain(generic, None)
    assert not is_named_chain("node", ["langsmith:hidden"])


def test_retry_after_parsing():
    assert _retry_after("2") == 2.0
    assert _retry_after("9999") == 60.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert 0 <= _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.0 + 1e-9


def test_hostd_config_keeps_existing_callbacks_and_fields(stub):
    from langchain_core.callbacks import StdOutCallbackHandler

    handler = HostdCallbackHandler(stub.url, sender=Sender(stub.url))
    other = StdOutCallbackHandler()
    config = hostd_config(handler, {"callbacks": [other], "tags": ["a"]}, configurable={"thread_id": "t"})
    assert config["callbacks"] == [other, handler]
    assert config["tags"] == ["a"] and config["configurable"] == {"thread_id": "t"}
    assert hostd_config(handler)["callbacks"] == [handler]


def test_env_defaults(monkeypatch, stub):
    monkeypatch.setenv("HOSTD_URL", stub.url)
    monkeypatch.setenv("HOSTD_TOKEN", "from-env")
    handler = HostdCallbackHandler(max_queue=7)
    assert handler.sender.endpoint == stub.url + "/v1/events" and handler.sender.max_queue == 7
    assert handler.sender._headers["authorization"] == "Bearer from-env"


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match="max_queue"):
        Sender("http://x", max_queue=0)
    with pytest.raises(ValueError, match="batch_size"):
        Sender("http://x", batch_size=0)
    with pytest.raises(ValueError, match="unknown event"):
        HostdCallbackHandler("http://x", events=["on_everything"])


def test_fast_and_slow_paths_agree():
    from langchain_core.messages import AIMessage

    from hostd_langchain.events import to_json

    rid = uuid.uuid4()
    message = AIMessage(content="hi", tool_calls=[{"name": "t", "args": {"a": 1}, "id": "c"}])
    c = Captured("on_chain_end", "node", rid, None, rid, 0, ["x"], {"user": "u", "langgraph_step": 3},
                 "output", {"messages": [message]})
    assert json.loads(to_json(c, 4000)) == to_wire(c, 4000)
    assert json.loads(to_json(c, 4000))["metadata"] == {"user": "u"}  # LangGraph bookkeeping left out
    long = Captured("on_tool_end", "t", rid, None, rid, 1, None, None, "output", "y" * 5000)
    assert json.loads(to_json(long, 100))["data"]["output"] == "y" * 100 + "…"
