// hostd policy in JavaScript (built with jco + the QuickJS backend; see README.md here).
//
// - `on_tool_end` events of a billing tool (the event `name`) go to route `billing`;
//   every other event goes to route `default`.
// - `metadata.user_email` is removed from every payload (and recorded as a redaction).
//
// policy_config: {"billing_tools": ["charge_card", ...]} (default DEFAULT_BILLING_TOOLS).
// The payload is the standard envelope the Rust policies deliver:
// {"event","name","run_id","root_run_id","parent_run_id","step","tags","metadata","data","ts"}.

import log from "hostd:policy/log@0.1.0";

const DEFAULT_BILLING_TOOLS = ["charge_card", "refund", "create_invoice"];

let billingTools = null;

// configure(config-json) -> result<_, string>: return for ok, throw a string for err.
export function configure(config) {
  let cfg = {};
  if (config.trim() !== "") {
    try {
      cfg = JSON.parse(config);
    } catch (e) {
      throw `policy_config is not JSON: ${e}`;
    }
  }
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) {
    throw "policy_config must be a JSON object";
  }
  let tools = DEFAULT_BILLING_TOOLS;
  if (cfg.billing_tools !== undefined) {
    if (!Array.isArray(cfg.billing_tools) || !cfg.billing_tools.every((t) => typeof t === "string")) {
      throw "policy_config.billing_tools must be an array of tool names";
    }
    tools = cfg.billing_tools;
  }
  billingTools = new Set(tools);
  log.log("debug", `route-by-tool: billing tools ${JSON.stringify([...billingTools])}`);
}

// evaluate(event) -> result<decision, string>
export function evaluate(event) {
  if (billingTools === null) {
    throw "evaluate called before configure";
  }
  let metadata;
  try {
    metadata = event.metadata.trim() === "" ? {} : JSON.parse(event.metadata);
  } catch (e) {
    throw `event metadata is not JSON: ${e}`;
  }
  const redactions = [];
  if (metadata !== null && typeof metadata === "object" && !Array.isArray(metadata) &&
      Object.prototype.hasOwnProperty.call(metadata, "user_email")) {
    delete metadata.user_email;
    redactions.push("/metadata/user_email");
  }
  const route = event.kind === "on_tool_end" && billingTools.has(event.name) ? "billing" : "default";
  // `data` is spliced in as received: it is never parsed or re-encoded.
  const data = event.data === "" ? "null" : event.data;
  const head = JSON.stringify({
    event: event.kind,
    name: event.name,
    run_id: event.runId,
    root_run_id: event.rootRunId,
    parent_run_id: event.parentRunId ?? null,
    step: event.step,
    tags: event.tags,
    metadata,
  });
  const payload = `${head.slice(0, -1)},"data":${data},"ts":${event.timestampMs}}`;
  return { tag: "deliver", val: [{ route, payload, key: null, redactions }] };
}
