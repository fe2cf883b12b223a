//! Where webhooks may connect: the address classes refused unless the operator allows
//! them (`server.allow_private_targets`, `server.allowed_private_targets`), the DNS
//! resolver that enforces that at connect time, and the proxy (`server.http_proxy`).
//!
//! A webhook URL is partner- or tenant-supplied configuration; without this a route
//! could reach the cloud metadata service (169.254.169.254), the admin ports of the
//! host itself or anything else on the private network. Names are checked after
//! resolution, on every new connection, so a name that resolves to a public address at
//! config time and to 127.0.0.1 later (DNS rebinding) is still refused.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address is not a public unicast one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), deprecated IPv6 site-local, local-use NAT64.
    Private,
    /// `169.254/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `100.64/10`, carrier-grade NAT (RFC 6598).
    SharedCgnat,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation, benchmarking, IETF protocol and future-use ranges, Teredo,
    /// IPv4-compatible IPv6.
    Reserved,
}

impl AddressClass {
    pub fn name(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::SharedCgnat => "shared (CGNAT)",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The class of a non-public address; `None` for a public unicast one. IPv6 forms
/// that carry an IPv4 address (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4
/// `2002:aabb:ccdd::`) are classified by the IPv4 address they reach.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => Unspecified,
        (10, ..) => Private,
        (100, 64..=127, _) => SharedCgnat,
        (127, ..) => Loopback,
        (169, 254, _) => LinkLocal,
        (172, 16..=31, _) => Private,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) => Reserved,
        (192, 168, _) => Private,
        (224..=239, ..) => Multicast,
        _ if ip == Ipv4Addr::BROADCAST => Broadcast,
        (240..=255, ..) => Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    if let Some(v4) = embedded_v4(ip) {
        // IPv4-compatible (`::a.b.c.d`) is deprecated: refused even when what it embeds is public.
        let compatible = s[..6] == [0; 6];
        return classify_v4(v4).or(compatible.then_some(Reserved));
    }
    Some(match s[0] {
        0x0064 if s[1] == 0xff9b && s[2] == 0x0001 => Private, // 64:ff9b:1::/48, local-use NAT64
        0x0100 if s[1..4] == [0; 3] => Reserved,               // 100::/64, discard
        0x2001 if s[1] == 0 => Reserved,                       // 2001::/32, Teredo
        0x2001 if s[1] == 0x0db8 => Reserved,                  // 2001:db8::/32, documentation
        x if x & 0xfe00 == 0xfc00 => UniqueLocal,
        x if x & 0xffc0 == 0xfe80 => LinkLocal,
        x if x & 0xffc0 == 0xfec0 => Private, // site-local, deprecated
        x if x & 0xff00 == 0xff00 => Multicast,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries: mapped `::ffff:0:0/96`, compatible `::/96`,
/// NAT64 `64:ff9b::/96`, 6to4 `2002::/16`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// An address range, `10.0.0.0/8` or `fd00::/8` (a bare address is one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not an address range like \"10.0.0.0/8\" or \"fd00::/8\"");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }

    /// True when `ip` is in the range; an IPv4-mapped IPv6 address matches IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => masked(n.to_bits() as u128, a.to_bits() as u128, 32, self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(n.to_bits(), a.to_bits(), 128, self.prefix),
            _ => false,
        }
    }
}

fn masked(network: u128, addr: u128, bits: u8, prefix: u8) -> bool {
    let shift = bits - prefix;
    shift == bits || (network >> shift) == (addr >> shift)
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Cidr::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Which non-public addresses webhooks may reach.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// `server.allow_private_targets`: every address.
    pub allow_all: bool,
    /// `server.allowed_private_targets`.
    pub allowed: Vec<Cidr>,
}

/// A connection hostd refused to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedTarget {
    pub addr: IpAddr,
    pub class: AddressClass,
    /// The name that resolved to `addr`, when it was one.
    pub host: Option<String>,
}

impl fmt::Display for RefusedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is a {} address", self.addr, self.class)?;
        if let Some(host) = &self.host {
            write!(f, " (what `{host}` resolves to)")?;
        }
        f.write_str(
            "; webhooks may not reach it unless server.allow_private_targets = true \
             or server.allowed_private_targets lists it",
        )
    }
}

impl std::error::Error for RefusedTarget {}

impl TargetPolicy {
    /// `Err` naming the address class when `ip` may not be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), RefusedTarget> {
        if self.allow_all {
            return Ok(());
        }
        match classify(ip) {
            Some(class) if !self.allowed.iter().any(|c| c.contains(ip)) => {
                Err(RefusedTarget { addr: ip, class, host: None })
            }
            _ => Ok(()),
        }
    }

    /// Checks a URL whose host is an address (those never reach the resolver).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), RefusedTarget> {
        // The URL parser has normalised the host: `[v6]`, dotted IPv4, or a name.
        let host = url.host_str().unwrap_or("");
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => self.check(ip),
            Err(_) => Ok(()),
        }
    }
}

/// The resolver webhook clients use: the system resolver (`getaddrinfo`, like reqwest's
/// default), minus the addresses the [`TargetPolicy`] refuses. A name with only refused
/// addresses fails with [`RefusedTarget`], which the webhook sink dead-letters at once.
pub struct GuardedResolver {
    policy: Arc<TargetPolicy>,
    /// The configured proxy's host: the operator chose it, so it is not checked.
    proxy_host: Option<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        let exempt = self.proxy_host.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(&host));
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if exempt {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match refused {
                Some(mut e) if allowed.is_empty() => {
                    e.host = Some(host);
                    Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// What outbound HTTP clients need from `[server]`: the target policy and the proxy.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    pub targets: Arc<TargetPolicy>,
    /// `server.http_proxy`; without it no proxy is used, whatever `HTTP(S)_PROXY` say.
    pub proxy: Option<String>,
}

impl Egress {
    /// A client builder with the proxy setting and the guarded resolver. The error
    /// never repeats the proxy URL (it may hold credentials).
    pub fn client_builder(&self) -> crate::Result<reqwest::ClientBuilder> {
        let builder = reqwest::Client::builder();
        let (builder, proxy_host) = match &self.proxy {
            None => (builder.no_proxy(), None),
            Some(url) => {
                let host = proxy_host(url)?;
                let proxy = reqwest::Proxy::all(url)
                    .map_err(|e| anyhow::anyhow!("server.http_proxy: not a usable proxy URL: {}", e.without_url()))?;
                (builder.proxy(proxy), Some(host))
            }
        };
        let resolver = GuardedResolver { policy: self.targets.clone(), proxy_host };
        Ok(builder.dns_resolver(Arc::new(resolver)))
    }
}

/// The host of `server.http_proxy`; errors without the URL itself.
pub fn proxy_host(url: &str) -> crate::Result<String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("server.http_proxy: not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        anyhow::bail!("server.http_proxy: scheme must be http or https, not `{}`", parsed.scheme());
    }
    match parsed.host_str() {
        Some(h) if !h.is_empty() => Ok(h.trim_start_matches('[').trim_end_matches(']').to_string()),
        _ => anyhow::bail!("server.http_proxy: the URL has no host"),
    }
}

/// The [`RefusedTarget`] among an error's causes, if a refused address is why it failed.
pub fn refused_target<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a RefusedTarget> {
    let mut cause: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<RefusedTarget>() {
            return Some(r);
        }
        cause = c.source();
    }
    None
}

#[cfg(test)]
mod tests;
