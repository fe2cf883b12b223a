//! What every sink is built with: whose route it serves, and where it may connect.

use super::RouteError;
use crate::egress::Egress;
use crate::record::TenantId;

/// The tenant and route a sink serves, the egress policy of `[server]` (where
/// webhooks may connect, through which proxy), and the signing secrets hostd keeps for
/// the route itself (a route created through the admin API).
#[derive(Clone)]
pub struct SinkContext {
    pub tenant: TenantId,
    pub route: String,
    pub egress: Egress,
    /// Stored signing secrets, newest first (two during a rotation's overlap). A
    /// webhook signs with these before any `secret_env` / `secret_file`.
    pub signing_secrets: Vec<String>,
}

impl std::fmt::Debug for SinkContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkContext")
            .field("tenant", &self.tenant)
            .field("route", &self.route)
            .field("signing_secrets", &self.signing_secrets.len())
            .finish_non_exhaustive()
    }
}

impl SinkContext {
    pub fn new(tenant: TenantId, route: impl Into<String>, egress: Egress) -> Self {
        SinkContext { tenant, route: route.into(), egress, signing_secrets: Vec::new() }
    }

    /// With the route's stored signing secrets, newest first.
    pub fn with_signing_secrets(mut self, secrets: Vec<String>) -> Self {
        self.signing_secrets = secrets;
        self
    }

    /// `template` with `{tenant}` and `{route}` replaced (Kafka topics, Redis stream
    /// names). One pass: a tenant id or route name that itself holds `{route}` is
    /// inserted as it is, never expanded again.
    pub fn expand(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + self.tenant.len() + self.route.len());
        let mut rest = template;
        while let Some(at) = rest.find('{') {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("{tenant}") {
                out.push_str(&self.tenant);
                rest = after;
            } else if let Some(after) = tail.strip_prefix("{route}") {
                out.push_str(&self.route);
                rest = after;
            } else {
                out.push('{');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        out
    }

    /// A problem with this route's sink.
    pub fn error(&self, problem: impl Into<String>) -> RouteError {
        RouteError { tenant: self.tenant.clone(), route: self.route.clone(), problem: problem.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(tenant: &str, route: &str) -> SinkContext {
        SinkContext::new(TenantId::from(tenant), route, Egress::default())
    }

    #[test]
    fn expands_tenant_and_route_once() {
        let c = ctx("acme", "billing");
        assert_eq!(c.expand("hostd:{tenant}:{route}"), "hostd:acme:billing");
        assert_eq!(c.expand("{route}.{tenant}.{tenant}"), "billing.acme.acme");
        assert_eq!(c.expand("plain"), "plain");
        assert_eq!(c.expand("{other}{tenant"), "{other}{tenant", "only the two names are placeholders");
        assert_eq!(c.expand("é{tenant}😀"), "éacme😀");
        // What is inserted is never expanded again.
        assert_eq!(ctx("{route}", "r").expand("{tenant}:{route}"), "{route}:r");
    }

    #[test]
    fn errors_name_the_tenant_and_route() {
        let e = ctx("acme", "default").error("url: not a valid URL");
        assert_eq!(e.to_string(), "tenant `acme`: route `default`: url: not a valid URL");
    }
}
