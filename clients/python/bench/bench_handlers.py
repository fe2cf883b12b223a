"""Cost of forwarding callback events, on the example supervisor agent (a subagent with
two tools, a scripted chat model, no LLM), against a real hostd.

Variants, interleaved in rounds so machine noise hits them alike:
  (a) no handler
  (a') a no-op AsyncCallbackHandler: what LangChain's callback machinery costs for any
       handler, before the handler does anything
  (b) HostdCallbackHandler (queue put on the agent's loop; a daemon thread sends)
  (c) naive: one `await httpx.AsyncClient.post` per event inside the callback
  (d) the guides' fire-and-forget: `asyncio.create_task(client.post(...))` per event,
      drained after each run (the drain is reported apart from the run)

    python clients/python/bench/bench_handlers.py --hostd target/release/hostd --plugin ...redact_pii.wasm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import HumanMessage

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "examples/langchain"))
import agent as example  # noqa: E402

from hostd_langchain import HostdCallbackHandler, Sender, hostd_config  # noqa: E402

QUESTION = {"messages": [HumanMessage("What does Ada's plan include?")]}


class Counter(BaseCallbackHandler):
    """Counts every callback LangChain makes to one handler during a run."""

    run_inline = True

    def __init__(self):
        self.calls = 0

    def __getattribute__(self, name):
        if name.startswith("on_"):
            def count(*args, **kwargs):
                object.__setattr__(self, "calls", object.__getattribute__(self, "calls") + 1)
            return count
        return object.__getattribute__(self, name)


class Noop(AsyncCallbackHandler):
    pass


class _Forwarding(AsyncCallbackHandler):
    """The guides' handler shape: forward the default taxonomy, one POST per event."""

    def __init__(self, url: str, client: httpx.AsyncClient):
        self.url = url + "/v1/events"
        self.client = client
        self.root = None
        self.step = 0

    def _body(self, event: str, run_id, payload) -> bytes:
        self.step += 1
        return json.dumps({"event": event, "run_id": str(run_id), "root_run_id": self.root, "step": self.step,
                           "data": {"output": str(payload)[:4000]}}).encode()

    async def _send(self, body: bytes) -> None:
        raise NotImplementedError

    async def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kw):
        if parent_run_id is None:
            self.root, self.step = str(run_id), 0

    async def on_tool_start(self, serialized, input_str, *, run_id, **kw):
        await self._send(self._body("on_tool_start", run_id, input_str))

    async def on_tool_end(self, output, *, run_id, **kw):
        await self._send(self._body("on_tool_end", run_id, output))

    async def on_chain_end(self, outputs, *, run_id, **kw):
        await self._send(self._body("on_chain_end", run_id, outputs))

    async def on_llm_end(self, response, *, run_id, **kw):
        await self._send(self._body("on_llm_end", run_id, response))

    async def on_custom_event(self, name, data, *, run_id, **kw):
        await self._send(self._body("on_custom_event", run_id, data))


class NaiveHandler(_Forwarding):
    async def _send(self, body: bytes) -> None:
        await self.client.post(self.url, content=body, headers={"content-type": "application/json"})


class CreateTaskHandler(_Forwarding):
    def __init__(self, url, client):
        super().__init__(url, client)
        self.tasks: set[asyncio.Task] = set()

    async def _send(self, body: bytes) -> None:
        task = asyncio.create_task(self.client.post(self.url, content=body, headers={"content-type": "application/json"}))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self):
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_hostd(binary: str, plugin: str, tmp: pathlib.Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--plugin", plugin, "--listen", f"127.0.0.1:{port}", "--out", str(tmp / "out.jsonl"),
         "--data-dir", str(tmp / "data")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("hostd did not start")


async def main(args) -> None:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="hostd-bench-"))
    proc, url = start_hostd(args.hostd, args.plugin, tmp)
    try:
        await run(args, url)
    finally:
        proc.terminate()
        proc.wait()


async def run(args, url: str) -> None:
    supervisor = example.build_supervisor()
    counter = Counter()
    await supervisor.ainvoke(QUESTION, {"callbacks": [counter]})
    callbacks = counter.calls

    sender = Sender(url)
    hostd_handler = HostdCallbackHandler(url, sender=sender)
    client = httpx.AsyncClient()
    naive = NaiveHandler(url, client)
    create_task = CreateTaskHandler(url, client)
    noop = Noop()
    times: dict[str, list[float]] = {k: [] for k in ("a", "n", "b", "c", "d")}
    drains: list[float] = []

    async def once(variant: str) -> None:
        config = {"a": {}, "n": {"callbacks": [noop]}, "b": hostd_config(hostd_handler), "c": {"callbacks": [naive]},
                  "d": {"callbacks": [create_task]}}[variant]
        t0 = time.perf_counter()
        await supervisor.ainvoke(QUESTION, config)
        times[variant].append(time.perf_counter() - t0)
        if variant == "d":
            t1 = time.perf_counter()
            await create_task.drain()
            drains.append(time.perf_counter() - t1)

    for variant in "anbcd":  # warm up: connections, imports, hostd's policy instance
        for _ in range(5):
            await once(variant)
    for k in times:
        times[k].clear()
    drains.clear()
    for _ in range(args.rounds):
        for variant in "anbcd":
            for _ in range(args.runs if variant != "c" else max(1, args.runs // 4)):
                await once(variant)
    await asyncio.get_running_loop().run_in_executor(None, sender.flush, 30)

    # The put itself, without the agent: what one on_tool_end costs the loop.
    # (A separate sender whose thread stays asleep during the loop — queue large enough,
    # batch and interval beyond the loop — so this is the callback alone; it sends after.)
    micro_handler = HostdCallbackHandler(url, sender=Sender(url, max_queue=100_000, batch_size=10_000,
                                                            flush_interval=3600))
    rid = uuid.uuid4()
    n = 50_000
    t0 = time.perf_counter()
    for _ in range(n):
        await micro_handler.on_custom_event("progress", {"i": 1}, run_id=rid)
    micro = (time.perf_counter() - t0) / n
    await asyncio.get_running_loop().run_in_executor(None, micro_handler.flush, 60)
    await client.aclose()

    med = {k: statistics.median(v) for k, v in times.items()}
    mean = {k: statistics.fmean(v) for k, v in times.items()}
    p99 = {k: sorted(v)[int(len(v) * 0.99) - 1] for k, v in times.items()}
    per_cb = {k: (med[k] - med["a"]) / callbacks for k in med}
    forwarded = hostd_handler.stats["sent"]
    print(f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores; date {time.strftime('%Y-%m-%d')}")
    print(f"callbacks per agent run (one handler): {callbacks}; runs per variant: "
          f"{ {k: len(v) for k, v in times.items()} }; hostd events sent by (b) and the micro loop: {forwarded}")
    print()
    per_cb_mean = {k: (mean[k] - mean["a"]) / callbacks for k in mean}
    print("| variant | agent run median | mean | p99 | added per callback (median) | (mean) | vs (b) |")
    print("|---|---|---|---|---|---|---|")
    names = {"a": "(a) no handler", "n": "(a') no-op handler", "b": "(b) HostdCallbackHandler",
             "c": "(c) naive inline httpx POST", "d": "(d) asyncio.create_task per event"}
    for k in "anbcd":
        ratio = "" if k in "anb" or per_cb["b"] <= 0 else f"{per_cb[k] / per_cb['b']:.0f}×"
        print(f"| {names[k]} | {med[k] * 1000:.2f} ms | {mean[k] * 1000:.2f} ms | {p99[k] * 1000:.2f} ms | "
              f"{per_cb[k] * 1e6:.1f} µs | {per_cb_mean[k] * 1e6:.1f} µs | {ratio} |")
    print()
    print(f"(b) over the no-op handler (what the hostd handler itself adds, its sender thread "
          f"included): {(med['b'] - med['n']) / callbacks * 1e6:.1f} µs per callback (median), "
          f"{(mean['b'] - mean['n']) / callbacks * 1e6:.1f} µs (mean)")
    print()
    print(f"(d) drain after each run (events still in flight when the agent finished): median "
          f"{statistics.median(drains) * 1000:.2f} ms")
    print(f"(b) one on_* call alone (bookkeeping + queue put, sender asleep): {micro * 1e6:.2f} µs")
    print(f"(b) stats: {hostd_handler.stats}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hostd", default=str(ROOT / "target/release/hostd"))
    parser.add_argument("--plugin", default=str(ROOT / "plugins/target/wasm32-wasip2/release/redact_pii.wasm"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40)
    asyncio.run(main(parser.parse_args()))
