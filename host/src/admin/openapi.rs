//! The admin API's OpenAPI 3.1 document, generated from the handlers and their types
//! (utoipa). Served at `GET /admin/v1/openapi.json`, printed by `hostd openapi`, and
//! committed as `openapi.json` at the top of the repository; a test fails when the
//! committed file and the code disagree (`make openapi` rewrites it).

use axum::response::IntoResponse;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hostd admin API",
        description = "Tenants, routes, tokens, signing secrets, the dead-letter queue and tenants' live policies. \
                       Authenticate with \
                       `Authorization: Bearer <token>`: the admin token sees every tenant; a tenant's own token \
                       sees only its own resources (403 on anyone else's).",
        license(name = "Apache-2.0")
    ),
    paths(
        super::list,
        super::show,
        super::delete,
        super::purge,
        super::replay::replay,
        super::policy::list,
        super::policy::show,
        super::policy::replace,
        super::policy::rollback,
        super::tenants_api::upload_policy,
        super::tenants_api::create_tenant,
        super::tenants_api::get_tenant,
        super::tenants_api::replace_tenant,
        super::tenants_api::delete_tenant,
        super::routes_api::list_routes,
        super::routes_api::create_route,
        super::routes_api::get_route,
        super::routes_api::replace_route,
        super::routes_api::delete_route,
        super::routes_api::list_secrets,
        super::routes_api::rotate_secret,
        super::tokens_api::list_tokens,
        super::tokens_api::create_token,
        super::tokens_api::revoke_token,
        super::audit::list_audit,
        openapi_json,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "dlq", description = "Dead letters: list, show, replay as-is or through the policy, purge"),
        (name = "policies", description = "Each tenant's live policy: status, swap, rollback"),
        (name = "tenants", description = "Tenants created, replaced and deleted at runtime; policy components"),
        (name = "routes", description = "A tenant's routes and their signing secrets"),
        (name = "tokens", description = "A tenant's tokens: created (shown once), listed, revoked"),
        (name = "audit", description = "Every change made through the API"),
        (name = "meta", description = "This document"),
    )
)]
struct AdminApi;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, with hostd's version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = AdminApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as the committed `openapi.json` holds it (pretty, newline-terminated).
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// This document. Needs no token.
#[utoipa::path(get, path = "/admin/v1/openapi.json", operation_id = "get_openapi", tag = "meta", security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_json_is_what_the_code_generates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == document_json(),
            "openapi.json differs from the document the code generates: run `make openapi` and commit it"
        );
    }

    #[test]
    fn every_route_of_the_admin_router_is_documented() {
        let doc = document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/admin/v1/dlq",
            "/admin/v1/dlq/{id}",
            "/admin/v1/dlq/purge",
            "/admin/v1/dlq/replay",
            "/admin/v1/tenants",
            "/admin/v1/tenants/{id}/policy",
            "/admin/v1/tenants/{id}/policy/rollback",
            "/admin/v1/openapi.json",
        ] {
            assert!(paths.contains(&p), "{p} is not in the OpenAPI document: {paths:?}");
        }
        assert!(matches!(doc.openapi, utoipa::openapi::OpenApiVersion::Version31));
    }
}
