"""The admin API's OpenAPI document: served by the real binary, valid OpenAPI 3.1, the
same as the committed openapi.json, and every documented operation answers as
documented without a token (401, or 200 for the document itself)."""

import json
import re

import httpx
from openapi_spec_validator import validate

from conftest import ROOT, Hostd, plugin

CONFIG = (
    '[server]\ndata_dir = "{dir}/data"\nadmin_token_env = "ADMIN_TOKEN"\n'
    f'[[tenants]]\nid = "acme"\ntoken_env = "ACME_TOKEN"\npolicy = "{plugin("pass_through")}"\n'
    '[tenants.routes.default]\ntype = "stdout"\n'
)
ENV = {"ADMIN_TOKEN": "admin-token-0123456789", "ACME_TOKEN": "acme-token-0123456789"}


def served(tmp_path):
    hostd = Hostd(tmp_path, CONFIG, ENV)
    try:
        doc = httpx.get(hostd.url + "/admin/v1/openapi.json").json()
        return hostd, doc
    except Exception:
        hostd.stop()
        raise


def test_the_served_document_is_valid_openapi_31_and_committed(tmp_path):
    hostd, doc = served(tmp_path)
    try:
        validate(doc)
        assert doc["openapi"] == "3.1.0"
        committed = json.loads((ROOT / "openapi.json").read_text())
        assert doc == committed, "openapi.json is stale: run `make openapi`"
    finally:
        hostd.stop()


def test_every_documented_operation_refuses_a_request_without_a_token(tmp_path):
    hostd, doc = served(tmp_path)
    try:
        operations = 0
        for path, item in doc["paths"].items():
            concrete = re.sub(r"\{id\}", "acme" if "tenants" in path else "1", path)
            for method, op in item.items():
                operations += 1
                r = httpx.request(method.upper(), hostd.url + concrete, json={} if method != "get" else None)
                if op.get("security") == [{}]:
                    assert r.status_code == 200, f"{method} {path}: {r.status_code}"
                    continue
                assert r.status_code == 401, f"{method.upper()} {path}: {r.status_code} {r.text}"
                assert "401" in op["responses"], f"{method} {path} does not document its 401"
                assert r.json()["error"]["code"] == "unauthorized"
        assert operations >= 9
    finally:
        hostd.stop()


def test_every_tenant_operation_refuses_other_tenants_and_too_narrow_scopes(tmp_path):
    """The authorization matrix over every documented operation on a tenant's resources:
    another tenant's `manage` token gets 403 on each, and so does this tenant's `ingest`
    token; admin-only and read operations refuse an `ingest` token too."""
    config = '[server]\ndata_dir = "{dir}/data"\nadmin_token_env = "ADMIN_TOKEN"\nsecret_key_env = "HOSTD_SECRET_KEY"\n'
    hostd = Hostd(tmp_path, config, {**ENV, "HOSTD_SECRET_KEY": "ab" * 32})
    try:
        admin = {"authorization": f"Bearer {ENV['ADMIN_TOKEN']}"}
        wasm = open(plugin("pass_through"), "rb").read()
        sha = httpx.post(hostd.url + "/admin/v1/policies", headers={**admin, "content-type": "application/wasm"},
                         content=wasm).json()["sha256"]
        tokens = {}
        for tenant in ("acme", "globex"):
            r = httpx.post(hostd.url + "/admin/v1/tenants", headers=admin, json={"id": tenant, "policy": sha})
            assert r.status_code == 201, r.text
            for scope in ("ingest", "manage"):
                r = httpx.post(hostd.url + f"/admin/v1/tenants/{tenant}/tokens", headers=admin, json={"scopes": [scope]})
                tokens[(tenant, scope)] = r.json()["secret"]
        doc = httpx.get(hostd.url + "/admin/v1/openapi.json").json()
        checked = 0
        for path, item in doc["paths"].items():
            concrete = path.replace("/dlq/{id}", "/dlq/1").replace("{id}", "acme").replace("{name}", "default")
            concrete = concrete.replace("{token_id}", "tok_0")
            for method, op in item.items():
                if op.get("security") == [{}]:
                    continue
                body = {} if method != "get" else None
                as_ = lambda token: httpx.request(method.upper(), hostd.url + concrete, json=body,
                                                  headers={"authorization": f"Bearer {token}"})
                r = as_(tokens[("acme", "ingest")])
                assert r.status_code == 403, f"ingest token: {method.upper()} {path}: {r.status_code} {r.text}"
                if path.startswith("/admin/v1/tenants/{id}"):
                    r = as_(tokens[("globex", "manage")])
                    assert r.status_code == 403, f"another tenant: {method.upper()} {path}: {r.status_code} {r.text}"
                assert "403" in op["responses"], f"{method} {path} does not document its 403"
                checked += 1
        assert checked >= 20, checked
    finally:
        hostd.stop()
