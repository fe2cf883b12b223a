use super::*;
use AddressClass::*;

fn class(s: &str) -> Option<AddressClass> {
    classify(s.parse().unwrap())
}

#[test]
fn classifies_non_public_addresses() {
    for (addr, want) in [
        ("127.0.0.1", Loopback),
        ("127.255.0.9", Loopback),
        ("::1", Loopback),
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:7f00:1", Loopback),
        ("::127.0.0.1", Loopback),
        ("64:ff9b::7f00:1", Loopback),
        ("2002:7f00:1::", Loopback),
        ("169.254.169.254", LinkLocal),
        ("::ffff:169.254.169.254", LinkLocal),
        ("fe80::1", LinkLocal),
        ("fd00::1", UniqueLocal),
        ("fc00::1", UniqueLocal),
        ("100.64.0.1", SharedCgnat),
        ("100.127.255.255", SharedCgnat),
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Unspecified),
        ("::", Unspecified),
        ("::ffff:0.0.0.0", Unspecified),
        ("10.1.2.3", Private),
        ("172.16.0.1", Private),
        ("172.31.255.255", Private),
        ("192.168.1.1", Private),
        ("::ffff:10.0.0.1", Private),
        ("fec0::1", Private),
        ("64:ff9b:1::1", Private),
        ("224.0.0.1", Multicast),
        ("ff02::1", Multicast),
        ("255.255.255.255", Broadcast),
        ("240.0.0.1", Reserved),
        ("192.0.2.1", Reserved),
        ("198.18.0.1", Reserved),
        ("2001:db8::1", Reserved),
        ("2001:0:1::1", Reserved),
        ("::8.8.8.8", Reserved),
    ] {
        assert_eq!(class(addr), Some(want), "{addr}");
    }
}

#[test]
fn public_addresses_pass() {
    for addr in [
        "8.8.8.8",
        "1.1.1.1",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "169.253.1.1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2606:4700::1111",
        "2a00:1450::1",
    ] {
        assert_eq!(class(addr), None, "{addr}");
    }
}

#[test]
fn allow_list_and_allow_all() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let deny = TargetPolicy::default();
    let e = deny.check(ip("::ffff:127.0.0.1")).unwrap_err();
    assert_eq!(e.class, Loopback);
    assert!(e.to_string().contains("::ffff:127.0.0.1 is a loopback address"), "{e}");
    assert!(e.to_string().contains("server.allow_private_targets"), "{e}");
    deny.check(ip("8.8.8.8")).unwrap();

    let some = TargetPolicy {
        allow_all: false,
        allowed: vec![Cidr::parse("10.0.0.0/8").unwrap(), Cidr::parse("fd00::/8").unwrap()],
    };
    some.check(ip("10.9.8.7")).unwrap();
    some.check(ip("::ffff:10.9.8.7")).unwrap();
    some.check(ip("fd12::1")).unwrap();
    assert!(some.check(ip("11.0.0.1")).is_ok()); // public anyway
    assert_eq!(some.check(ip("192.168.0.1")).unwrap_err().class, Private);
    assert_eq!(some.check(ip("169.254.169.254")).unwrap_err().class, LinkLocal);

    let all = TargetPolicy { allow_all: true, allowed: vec![] };
    all.check(ip("169.254.169.254")).unwrap();
}

#[test]
fn cidr_parsing() {
    assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
    assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("1.2.3.4".parse().unwrap()));
    assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains("::2".parse().unwrap()));
    for bad in ["10.0.0.0/33", "10.0.0/8", "fd00::/129", "x", "10.0.0.0/-1", ""] {
        let e = Cidr::parse(bad).unwrap_err();
        assert!(e.contains("is not an address range"), "{bad}: {e}");
    }
}

#[test]
fn ip_literal_urls_are_checked() {
    let deny = TargetPolicy::default();
    let url = |s: &str| reqwest::Url::parse(s).unwrap();
    assert_eq!(deny.check_url(&url("http://127.0.0.1:9/x")).unwrap_err().class, Loopback);
    assert_eq!(deny.check_url(&url("http://[::ffff:169.254.169.254]/")).unwrap_err().class, LinkLocal);
    // The WHATWG parser normalises the shorthand forms to the address.
    assert_eq!(deny.check_url(&url("http://2130706433/")).unwrap_err().class, Loopback);
    assert_eq!(deny.check_url(&url("http://0x7f.1/")).unwrap_err().class, Loopback);
    deny.check_url(&url("https://hooks.example.com/")).unwrap();
}

#[test]
fn proxy_urls_are_checked_without_echoing_them() {
    assert_eq!(proxy_host("http://user:pw@proxy.internal:3128").unwrap(), "proxy.internal");
    assert_eq!(proxy_host("http://[::1]:3128").unwrap(), "::1");
    let e = proxy_host("socks5://user:pw@p:1080").unwrap_err().to_string();
    assert!(e.contains("scheme must be http or https") && !e.contains("pw"), "{e}");
    let e = proxy_host("not a url pw").unwrap_err().to_string();
    assert!(e.starts_with("server.http_proxy: not a valid URL") && !e.contains("pw"), "{e}");
}

#[tokio::test]
async fn the_resolver_drops_refused_addresses() {
    let resolver = GuardedResolver { policy: Arc::new(TargetPolicy::default()), proxy_host: None };
    let err = match resolver.resolve("localhost".parse().unwrap()).await {
        Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
        Err(e) => e,
    };
    let refused = refused_target(&*err).expect("a RefusedTarget");
    assert_eq!(refused.class, Loopback);
    assert_eq!(refused.host.as_deref(), Some("localhost"));

    let loopback_v4 = TargetPolicy { allow_all: false, allowed: vec![Cidr::parse("127.0.0.0/8").unwrap()] };
    let resolver = GuardedResolver { policy: Arc::new(loopback_v4), proxy_host: None };
    let addrs: Vec<SocketAddr> = resolver.resolve("localhost".parse().unwrap()).await.unwrap().collect();
    assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() && a.is_ipv4()), "{addrs:?}");

    let exempt = GuardedResolver { policy: Arc::new(TargetPolicy::default()), proxy_host: Some("localhost".into()) };
    assert!(exempt.resolve("localhost".parse().unwrap()).await.unwrap().next().is_some());
}
