"""hostd policy in Python (built with componentize-py; see README.md here).

Keeps only `on_llm_end` and reshapes it into one usage record for route `default`:
`{"model", "prompt_tokens", "completion_tokens", "run_id"}`. Token usage is read from
`data.token_usage` (LangChain's `usage_metadata`: `input_tokens` / `output_tokens`,
which is what the hostd LangChain client sends) or `data.llm_output.token_usage`
(an `LLMResult`'s provider usage: `prompt_tokens` / `completion_tokens`); a count
that is not there is `null`. Every other event is dropped.

policy_config: `{"route": "default"}` (optional).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

_route = None


def _obj(value):
    return value if isinstance(value, dict) else {}


def _count(usage, *names):
    for name in names:
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def usage_record(data, run_id):
    """The usage record of one `on_llm_end` payload (`data`, already parsed)."""
    data = _obj(data)
    llm_output = _obj(data.get("llm_output"))
    usage = _obj(data.get("token_usage")) or _obj(llm_output.get("token_usage")) or _obj(llm_output.get("usage"))
    model = data.get("model") or llm_output.get("model_name") or llm_output.get("model") or data.get("model_name")
    return {
        "model": model if isinstance(model, str) else None,
        "prompt_tokens": _count(usage, "input_tokens", "prompt_tokens"),
        "completion_tokens": _count(usage, "output_tokens", "completion_tokens"),
        "run_id": run_id,
    }


class WitWorld(wit_world.WitWorld):
    def configure(self, config: str) -> None:
        global _route
        try:
            cfg = json.loads(config) if config.strip() else {}
        except ValueError as e:
            raise Err(f"policy_config is not JSON: {e}")
        if not isinstance(cfg, dict):
            raise Err("policy_config must be a JSON object")
        route = cfg.get("route", "default")
        if not isinstance(route, str):
            raise Err("policy_config.route must be a string")
        _route = route

    def evaluate(self, event: types.Event) -> types.Decision:
        if _route is None:
            raise Err("evaluate called before configure")
        if event.kind != "on_llm_end":
            return types.Decision_Drop(f"{event.kind} is not on_llm_end")
        try:
            data = json.loads(event.data) if event.data else None
        except ValueError as e:
            raise Err(f"event data is not JSON: {e}")
        payload = json.dumps(usage_record(data, event.run_id), separators=(",", ":"))
        return types.Decision_Deliver([types.Delivery(route=_route, payload=payload, key=None, redactions=[])])
