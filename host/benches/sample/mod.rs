//! The event the policy benches evaluate (policy.rs, languages.rs).

use hostd::policy::PolicyEvent;

/// A realistic ~1 KB `on_tool_end`: a CRM lookup result with one email in it.
pub fn sample_event() -> PolicyEvent {
    let data = serde_json::json!({
        "output": {
            "customer": {"id": "cus_8f2k1", "name": "Ada Lovelace", "email": "ada@example.com", "tier": "enterprise",
                          "created": "2024-03-18T10:22:31Z", "country": "GB"},
            "orders": [
                {"id": "ord_1001", "total": 129.5, "currency": "EUR", "status": "shipped", "items": 3},
                {"id": "ord_1002", "total": 42.0, "currency": "EUR", "status": "processing", "items": 1},
                {"id": "ord_1003", "total": 310.25, "currency": "EUR", "status": "delivered", "items": 7}
            ],
            "summary": "Customer has three recent orders; the latest is still processing at the warehouse in Leipzig.",
            "notes": "Prefers contact by email. Escalated once in 2025 about a delayed delivery, resolved within a day."
        },
        "tool_call_id": "call_Q2x9aB7c", "status": "success", "artifact": null
    })
    .to_string();
    let metadata = serde_json::json!({"langgraph_node": "tools", "langgraph_step": 4, "thread_id": "th_91", "ls_provider": "fake"})
        .to_string();
    PolicyEvent {
        tenant: "bench".into(),
        kind: "on_tool_end".into(),
        name: "crm_lookup".into(),
        run_id: "6f1d0c1e-8a8e-4f4e-9a53-0d7c1b7b2a11".into(),
        root_run_id: "1b0e7d52-4d0b-4c6f-8a3e-5e2f9c1d7a00".into(),
        parent_run_id: Some("2c9a4e11-7b3f-4a8d-9c21-6e5d4b3a2f10".into()),
        step: 12,
        tags: vec!["seq:step:4".into(), "agent".into()],
        metadata,
        data,
        timestamp_ms: 1_767_225_600_000,
    }
}
