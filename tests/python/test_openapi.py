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
