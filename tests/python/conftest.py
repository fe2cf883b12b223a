"""Shared fixtures: the real hostd binary, plugins, a recording HTTP receiver, Redis."""

import hashlib
import http.server
import json
import os
import pathlib
import socket
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins/target/wasm32-wasip2/release"
HOSTD = pathlib.Path(os.environ.get("HOSTD_BIN", ROOT / "target/debug/hostd"))
REDIS_URL = os.environ.get("HOSTD_TEST_REDIS_URL", "redis://127.0.0.1:16379/0")


def plugin(name: str) -> str:
    path = PLUGINS / f"{name}.wasm"
    assert path.exists(), f"{path} is missing: run `make plugins`"
    return str(path)


def message_id(tenant: str, route: str, idempotency_key: str) -> str:
    """The id hostd gives a delivery downstream (`webhook-id`, `Idempotency-Key`, the
    Redis and SNS dedupe ids), as the README documents it: scoped by tenant and route."""
    data = b"hostd-message-id-v1"
    for part in (tenant, route, idempotency_key):
        raw = part.encode()
        data += len(raw).to_bytes(8, "big") + raw
    return "msg_" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fan_out_config(routes: list, admin: bool = True) -> str:
    """The config head of tenant `acme` (token in ACME_TOKEN) whose fan-out policy
    delivers every event to each of `routes`; append the `[tenants.routes.NAME]` tables."""
    admin_line = 'admin_token_env = "ADMIN_TOKEN"\n' if admin else ""
    names = ", ".join(f'"{r}"' for r in routes)
    return (
        f'[server]\ndata_dir = "{{dir}}/data"\nallow_private_targets = true\n{admin_line}'
        f'[[tenants]]\nid = "acme"\ntoken_env = "ACME_TOKEN"\npolicy = "{plugin("fan_out")}"\n'
        f"policy_config = {{ routes = [{names}] }}\n"
    )


class Hostd:
    """hostd started on a config in a temp dir; stopped at teardown."""

    def __init__(self, tmp: pathlib.Path, config: str, env: dict, listen: str = "127.0.0.1:0"):
        assert HOSTD.exists(), f"{HOSTD} is missing: run `make test` (it builds the binary)"
        (tmp / "hostd.toml").write_text(config.replace("{dir}", str(tmp)))
        self.proc = subprocess.Popen(
            [str(HOSTD), "--config", str(tmp / "hostd.toml"), "--listen", listen],
            cwd=tmp,
            env={**os.environ, "RUST_LOG": "info", **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = []
        deadline = time.time() + 60
        self.url = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if "listening on http://" in line:
                self.url = "http://" + line.split("listening on http://")[1].split()[0]
                break
        assert self.url, "hostd did not start:\n" + "".join(self.log)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def start_hostd(tmp_path):
    started = []

    def start(config: str, env: dict, listen: str = "127.0.0.1:0") -> Hostd:
        h = Hostd(tmp_path, config, env, listen)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


class Recorder:
    """A real HTTP receiver that records each request and answers 200."""

    def __init__(self):
        self.requests = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                recorder.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 15.0):
        deadline = time.time() + timeout
        while len(self.requests) < n and time.time() < deadline:
            time.sleep(0.02)
        return self.requests


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.server.shutdown()


def post_events(url: str, token: str, events: list) -> dict:
    import httpx

    resp = httpx.post(
        f"{url}/v1/events",
        headers={"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"},
        content="".join(json.dumps(e) + "\n" for e in events),
    )
    assert resp.status_code == 202, resp.text
    return resp.json()
