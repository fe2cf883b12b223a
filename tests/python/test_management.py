"""Tenants, routes, tokens and secrets at runtime through the management API and the
`hostd` CLI, against the real binary: from nothing to signed deliveries with no
restart, kept across a restart; rotation, revocation, the authorization matrix and bad
input."""

import json
import subprocess
import time

import httpx
from standardwebhooks.webhooks import Webhook

from conftest import HOSTD, plugin, post_events

ADMIN = "admin-token-0123456789abcdef"
KEY = "0123456789abcdef" * 4
CONFIG = (
    '[server]\ndata_dir = "{dir}/data"\nadmin_token_env = "ADMIN_TOKEN"\nsecret_key_env = "HOSTD_SECRET_KEY"\n'
    "allow_private_targets = true\n"
)
ENV = {"ADMIN_TOKEN": ADMIN, "HOSTD_SECRET_KEY": KEY}


def cli(url: str, *args: str, json_out: bool = True, check: bool = True):
    cmd = [str(HOSTD), *args, "--url", url, "--token", ADMIN] + (["--json"] if json_out else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if json_out else done.stdout
    return done


def event(i: int, root: str = "run") -> dict:
    return {"event": "on_tool_end", "name": "lookup", "run_id": f"r{i}", "root_run_id": root, "step": i,
            "data": {"output": f"result {i}"}}


def test_from_nothing_to_signed_deliveries_without_a_restart_and_after_one(start_hostd, recorder):
    h = start_hostd(CONFIG, ENV)
    created = cli(h.url, "tenant", "create", "acme", "--policy", plugin("pass_through"))
    assert created["id"] == "acme" and created["source"] == "api" and created["revision"] == 1
    route = cli(h.url, "route", "add", "acme", "default", "--spec", json.dumps({"type": "webhook", "url": recorder.url + "/hook"}))
    assert route["name"] == "default"
    token = cli(h.url, "token", "create", "acme", "--scope", "ingest", "--label", "agent")
    secret_token = token["secret"]
    assert secret_token.startswith("hostd_") and token["scopes"] == ["ingest"]
    [signing] = cli(h.url, "secret", "list", "acme", "default")["secrets"]
    assert signing["secret"].startswith("whsec_")

    post_events(h.url, secret_token, [event(1)])
    [req] = recorder.wait(1)
    payload = Webhook(signing["secret"]).verify(req["body"], req["headers"])
    assert payload["run_id"] == "r1"

    # Listed tokens never show the secret; the audit log names every change, no secret in it.
    listed = cli(h.url, "token", "list", "acme")["tokens"]
    assert [t["id"] for t in listed] == [token["id"]] and "secret" not in listed[0]
    audit = httpx.get(h.url + "/admin/v1/audit", headers={"authorization": f"Bearer {ADMIN}"}).json()["entries"]
    actions = [e["action"] for e in audit]
    assert actions == ["policy.upload", "tenant.create", "route.create", "token.create"], actions
    text = json.dumps(audit)
    assert secret_token not in text and signing["secret"] not in text
    assert secret_token not in "".join(h.log) and signing["secret"] not in "".join(h.log)

    # A restart keeps everything: the same token delivers, signed with the same secret.
    h.stop()
    h2 = start_hostd(CONFIG, ENV)
    post_events(h2.url, secret_token, [event(2)])
    reqs = recorder.wait(2)
    assert len(reqs) == 2
    assert Webhook(signing["secret"]).verify(reqs[1]["body"], reqs[1]["headers"])["run_id"] == "r2"
    shown = cli(h2.url, "tenant", "show", "acme")
    assert shown["routes"] == ["default"] and shown["revision"] == 1


def test_revoking_a_token_stops_it_at_once_and_rotation_overlaps(start_hostd, recorder):
    h = start_hostd(CONFIG, ENV)
    cli(h.url, "tenant", "create", "acme", "--policy", plugin("pass_through"))
    cli(h.url, "route", "add", "acme", "default", "--spec", json.dumps({"type": "webhook", "url": recorder.url + "/a"}))
    t1 = cli(h.url, "token", "create", "acme", "--scope", "ingest")
    old = cli(h.url, "secret", "list", "acme", "default")["secrets"][0]["secret"]
    new = cli(h.url, "secret", "rotate", "acme", "default", "--overlap", "1h")["secret"]
    post_events(h.url, t1["secret"], [event(1)])
    [req] = recorder.wait(1)
    for s in (old, new):
        assert Webhook(s).verify(req["body"], req["headers"])["run_id"] == "r1"

    revoked_at = time.time()
    cli(h.url, "token", "revoke", "acme", t1["id"])
    r = httpx.post(h.url + "/v1/events", headers={"authorization": f"Bearer {t1['secret']}"}, json=event(2))
    assert r.status_code == 401 and time.time() - revoked_at < 1.0

    # The route's URL changes: later deliveries go to the new one.
    cli(h.url, "route", "update", "acme", "default", "--spec", json.dumps({"type": "webhook", "url": recorder.url + "/b"}))
    t2 = cli(h.url, "token", "create", "acme", "--scope", "ingest")
    post_events(h.url, t2["secret"], [event(3)])
    reqs = recorder.wait(2)
    assert [q["path"] for q in reqs] == ["/a", "/b"]


def test_the_authorization_matrix(start_hostd, recorder):
    h = start_hostd(CONFIG, ENV)
    for tenant in ("acme", "globex"):
        cli(h.url, "tenant", "create", tenant, "--policy", plugin("pass_through"))
    ingest = cli(h.url, "token", "create", "acme", "--scope", "ingest")["secret"]
    manage = cli(h.url, "token", "create", "acme", "--scope", "manage")["secret"]
    read = cli(h.url, "token", "create", "acme", "--scope", "read-only")["secret"]
    other = cli(h.url, "token", "create", "globex", "--scope", "manage")["secret"]

    def status(method, path, token, body=None):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, h.url + path, headers=headers, json=body).status_code

    route = {"name": "r", "type": "stdout"}
    assert status("GET", "/admin/v1/tenants/acme", None) == 401
    assert status("GET", "/admin/v1/tenants/acme", other) == 403
    assert status("GET", "/admin/v1/tenants/acme/routes", ingest) == 403
    assert status("POST", "/admin/v1/tenants/acme/routes", ingest, route) == 403
    assert status("POST", "/admin/v1/tenants/acme/routes", read, route) == 403
    assert status("GET", "/admin/v1/tenants/acme/routes", read) == 200
    assert status("POST", "/admin/v1/tenants/acme/routes", manage, route) == 201
    assert status("POST", "/admin/v1/tenants/globex/routes", manage, route) == 403
    assert status("POST", "/admin/v1/tenants", manage, {"id": "x", "policy": "0" * 64}) == 403
    assert status("GET", "/admin/v1/audit", manage) == 403
    r = httpx.post(h.url + "/v1/events", headers={"authorization": f"Bearer {read}"}, json=event(1))
    assert r.status_code == 403 and "read-only" in r.text


def test_bad_input_is_named_and_changes_nothing(start_hostd, recorder):
    h = start_hostd(CONFIG, ENV)
    cli(h.url, "tenant", "create", "acme", "--policy", plugin("pass_through"))
    auth = {"authorization": f"Bearer {ADMIN}"}

    def call(method, path, body=None, headers=None):
        return httpx.request(method, h.url + path, headers={**auth, **(headers or {})}, json=body)

    r = call("POST", "/admin/v1/tenants/acme/routes", {"name": "x", "type": "carrier-pigeon"})
    assert r.status_code in (400, 422) and "carrier-pigeon" in r.text, r.text
    r = call("POST", "/admin/v1/tenants/acme/routes", {"name": "x", "type": "webhook", "url": "not a url"})
    assert r.status_code in (400, 422) and "url" in r.text, r.text
    r = call("POST", "/admin/v1/tenants", {"id": "acme", "policy": cli(h.url, "tenant", "show", "acme")["spec"]["policy"]})
    assert r.status_code == 409 and "exists already" in r.text, r.text
    r = httpx.post(h.url + "/admin/v1/tenants", headers={**auth, "content-type": "application/json"}, content=b"{not json")
    assert r.status_code in (400, 422), r.text
    r = call("PUT", "/admin/v1/tenants/acme", cli(h.url, "tenant", "show", "acme")["spec"], {"if-match": '"7"'})
    assert r.status_code == 412 and "revision 1, not 7" in r.text, r.text
    assert call("GET", "/admin/v1/tenants/acme/routes").json()["routes"] == []
    assert [e["action"] for e in call("GET", "/admin/v1/audit").json()["entries"]] == ["policy.upload", "tenant.create"]


def test_deleting_a_route_with_pending_deliveries_needs_force_and_dead_letters_them(start_hostd):
    from conftest import free_port

    h = start_hostd(CONFIG, ENV)
    auth = {"authorization": f"Bearer {ADMIN}"}
    cli(h.url, "tenant", "create", "acme", "--policy", plugin("pass_through"))
    down = f"http://127.0.0.1:{free_port()}/nobody-listens"
    cli(h.url, "route", "add", "acme", "default", "--spec", json.dumps({"type": "webhook", "url": down, "retry": ["1h"]}))
    token = cli(h.url, "token", "create", "acme", "--scope", "ingest")["secret"]
    post_events(h.url, token, [event(i) for i in range(3)])
    refused = cli(h.url, "route", "remove", "acme", "default", check=False)
    assert refused.returncode != 0 and "3 pending deliveries" in refused.stderr, refused.stderr
    assert cli(h.url, "route", "list", "acme")["routes"][0]["name"] == "default"
    removed = cli(h.url, "route", "remove", "acme", "default", "--force")
    assert removed == {"deleted": True, "dead_lettered": 3}
    dlq = httpx.get(h.url + "/admin/v1/dlq", headers=auth).json()["entries"]
    assert sorted(e["reason"] for e in dlq) == ["route_removed"] * 3


def test_file_tenants_are_read_only_over_the_api_and_an_id_in_both_stops_startup(start_hostd, tmp_path):
    file_tenant = (
        f'[[tenants]]\nid = "filed"\ntoken_env = "FILED_TOKEN"\npolicy = "{plugin("pass_through")}"\n'
        '[tenants.routes.default]\ntype = "stdout"\n'
    )
    env = {**ENV, "FILED_TOKEN": "filed-token-0123456789"}
    h = start_hostd(CONFIG + file_tenant, env)
    auth = {"authorization": f"Bearer {ADMIN}"}
    shown = cli(h.url, "tenant", "show", "filed")
    assert shown["source"] == "file" and shown["routes"] == ["default"]
    for method, path, body in [
        ("DELETE", "/admin/v1/tenants/filed", None),
        ("POST", "/admin/v1/tenants/filed/routes", {"name": "x", "type": "stdout"}),
        ("DELETE", "/admin/v1/tenants/filed/routes/default", None),
    ]:
        r = httpx.request(method, h.url + path, headers=auth, json=body)
        assert r.status_code == 409 and "hostd.toml" in r.text and "declared" in r.text, (path, r.status_code, r.text)
    # Tokens are runtime resources for file tenants too.
    t = cli(h.url, "token", "create", "filed", "--scope", "ingest")
    post_events(h.url, t["secret"], [event(1)])

    # A tenant created through the API whose id the file then declares: startup refuses.
    cli(h.url, "tenant", "create", "twice", "--policy", plugin("pass_through"))
    # SIGHUP re-reads the file; the API tenant is not the file's to add or remove.
    import signal
    h.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and not any("SIGHUP: no policy changed" in line for line in h.log):
        time.sleep(0.05)
    assert any("SIGHUP: no policy changed" in line for line in h.log), "".join(h.log[-20:])
    assert not any("twice" in line and "needs a restart" in line for line in h.log), "".join(h.log[-20:])
    h.stop()
    clash = file_tenant.replace('"filed"', '"twice"').replace("FILED_TOKEN", "TWICE_TOKEN")
    (tmp_path / "hostd.toml").write_text((CONFIG + clash).replace("{dir}", str(tmp_path)))
    done = subprocess.run([str(HOSTD), "--config", str(tmp_path / "hostd.toml"), "--listen", "127.0.0.1:0"],
                          env={**__import__("os").environ, **env, "TWICE_TOKEN": "twice-token-0123456789"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "tenant `twice`" in done.stderr and "admin API" in done.stderr, done.stderr


def test_tenants_are_listed_a_page_at_a_time(start_hostd):
    h = start_hostd(CONFIG, ENV)
    for t in ("c", "a", "b"):
        cli(h.url, "tenant", "create", t, "--policy", plugin("pass_through"))
    auth = {"authorization": f"Bearer {ADMIN}"}
    first = httpx.get(h.url + "/admin/v1/tenants?limit=2", headers=auth).json()
    assert [t["tenant"] for t in first["tenants"]] == ["a", "b"] and first["next"] == "b"
    rest = httpx.get(h.url + f"/admin/v1/tenants?limit=2&after={first['next']}", headers=auth).json()
    assert [t["tenant"] for t in rest["tenants"]] == ["c"] and rest["next"] is None
    assert httpx.get(h.url + "/admin/v1/tenants?limit=0", headers=auth).status_code == 400
    table = cli(h.url, "tenant", "list", json_out=False)
    assert [line.split()[0] for line in table.strip().splitlines()] == ["ID", "a", "b", "c"], table


def test_policy_tests_are_checked_before_a_tenant_changes(start_hostd):
    """Fixtures run against the tenant's routes, so they come once the routes exist: a
    spec whose fixtures fail is refused (422) and nothing changes."""
    h = start_hostd(CONFIG, ENV)
    auth = {"authorization": f"Bearer {ADMIN}"}
    created = cli(h.url, "tenant", "create", "acme", "--policy", plugin("pass_through"))
    cli(h.url, "route", "add", "acme", "default", "--spec", json.dumps({"type": "stdout"}))
    ev = {"event": "on_tool_end", "run_id": "r", "root_run_id": "root", "step": 1, "data": {}}
    wrong = json.dumps({"event": ev, "expect": {"decision": "drop"}}) + "\n"
    right = json.dumps({"event": ev, "expect": {"decision": "deliver", "deliveries": [{"route": "default"}]}}) + "\n"
    spec = created["spec"]
    r = httpx.put(h.url + "/admin/v1/tenants/acme", headers=auth, json={**spec, "policy_tests": wrong})
    message = r.json()["error"]["message"]
    assert r.status_code == 422 and "fails its tests" in message and 'expected `/decision` = "drop"' in message, message
    assert httpx.get(h.url + "/admin/v1/tenants/acme", headers=auth).json()["revision"] == 1
    r = httpx.put(h.url + "/admin/v1/tenants/acme", headers=auth, json={**spec, "policy_tests": right})
    assert r.status_code == 200 and r.json()["revision"] == 2, r.text
    r = httpx.post(h.url + "/admin/v1/tenants", headers=auth, json={"id": "other", "policy": spec["policy"], "policy_tests": wrong})
    assert r.status_code == 422 and "fails its tests" in r.text, r.text
    assert httpx.get(h.url + "/admin/v1/tenants/other", headers=auth).status_code == 404
