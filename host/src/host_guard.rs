//! The `Host` check of an unauthenticated hostd (`server.allow_unauthenticated`, the
//! quickstart without a token). Listening on loopback is not enough on its own: a web
//! page the operator opens can point its own name at 127.0.0.1 (DNS rebinding) and
//! then post events, or read `/metrics`, as a same-origin request. Such a request
//! carries the page's name in `Host`, so only requests addressed to `localhost`,
//! `127.0.0.1`, `[::1]` or the listen address (any port) are answered.

use crate::api_error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses a request's `Host` may name besides `localhost`.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    addresses: Vec<IpAddr>,
}

impl AllowedHosts {
    /// `127.0.0.1`, `::1` and `listen` (the addresses hostd listens on).
    pub fn new(listen: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
        addresses.extend(listen);
        AllowedHosts { addresses }
    }

    /// True when the `Host` value (`name[:port]`, `[v6][:port]`) is one hostd answers.
    pub fn allows(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((inner, after)) if after.is_empty() || after.strip_prefix(':').is_some_and(is_port) => inner,
                _ => return false,
            },
            None => match host.rsplit_once(':') {
                Some((name, port)) if is_port(port) => name,
                Some(_) => return false,
                None => host,
            },
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        name.parse::<IpAddr>().is_ok_and(|ip| self.addresses.contains(&ip))
    }
}

/// `8787`, or empty (RFC 3986 allows `host:`).
fn is_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit())
}

/// Middleware: 421 for a request whose `Host` (or HTTP/2 `:authority`) is not allowed.
/// A request with neither is let through: every browser sends one.
pub async fn check_host(State(allowed): State<AllowedHosts>, request: Request, next: Next) -> Response {
    let host = match request.headers().get(header::HOST) {
        Some(value) => Some(value.to_str().unwrap_or("(not ASCII)").to_string()),
        None => request.uri().authority().map(|a| a.as_str().to_string()),
    };
    match host {
        Some(host) if !allowed.allows(&host) => misdirected(&host).into_response(),
        _ => next.run(request).await,
    }
}

fn misdirected(host: &str) -> ApiError {
    let shown: String = host.chars().take(100).map(|c| if c.is_control() { '?' } else { c }).collect();
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected_request",
        format!(
            "Host `{shown}` is not served: without a token (server.allow_unauthenticated) hostd answers only \
             requests addressed to localhost, 127.0.0.1, [::1] or its listen address, so a web page cannot \
             reach it by DNS rebinding; use one of those names, or configure a token"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_the_listen_address_pass() {
        let allowed = AllowedHosts::new(["127.0.0.2".parse().unwrap()]);
        for ok in [
            "localhost",
            "LocalHost:8787",
            "localhost.:1",
            "127.0.0.1",
            "127.0.0.1:8787",
            "[::1]",
            "[::1]:8787",
            "127.0.0.2:9000",
            "localhost:",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8787",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.3:8787",
            "[::2]:8787",
            "::1",
            "[::1]x",
            "localhost:80x",
            "",
            "10.0.0.1",
        ] {
            assert!(!allowed.allows(bad), "{bad}");
        }
    }

    #[test]
    fn the_refusal_names_the_host_and_the_reason() {
        let e = misdirected("evil.example:8787");
        assert_eq!(e.status, StatusCode::MISDIRECTED_REQUEST);
        assert!(e.message.contains("`evil.example:8787`") && e.message.contains("DNS rebinding"), "{}", e.message);
        assert!(!misdirected("a\nb").message.contains('\n'));
    }
}
