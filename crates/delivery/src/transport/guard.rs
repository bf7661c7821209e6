//! The SSRF guard: which IP addresses a delivery may connect to. Checked on the addresses DNS
//! returned, inside the HTTP client's resolver, so the address checked is the address used and
//! DNS rebinding cannot slip past an earlier check. Literal-IP URLs get the same check.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to connect to {addr}: {class} address (allow it with NOTIFY_ALLOW_PRIVATE_TARGETS)")]
pub struct Refused {
    pub addr: IpAddr,
    pub class: &'static str,
}

/// The address policy: public addresses pass; special-purpose ones only when allow-listed;
/// cloud metadata never.
#[derive(Debug, Clone, Default)]
pub struct TargetGuard {
    allow: Arc<Vec<IpNet>>,
}

impl TargetGuard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow: Arc::new(allow) }
    }

    /// Checks a target URL whose host is an IP address, as a delivery would (endpoint creation
    /// refuses what delivery would refuse); a host name passes (it is checked after DNS, at
    /// delivery).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        entraguard_core::endpoint::literal_ip(url).map_or(Ok(()), |ip| self.check(ip))
    }

    /// Checks one address.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refused> {
        let addr = canonical(addr);
        if is_metadata(addr) {
            return Err(Refused { addr, class: "cloud metadata (never allowed)" });
        }
        let Some(class) = special_purpose(addr) else {
            return Ok(());
        };
        if self.allow.iter().any(|net| net.contains(&addr)) {
            return Ok(());
        }
        Err(Refused { addr, class })
    }

    /// Keeps the addresses that pass; the error names the first refused when none do.
    pub fn filter(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        let mut first_refusal = None;
        let passed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check(a.ip()) {
                Ok(()) => true,
                Err(r) => {
                    first_refusal.get_or_insert(r);
                    false
                }
            })
            .collect();
        match (passed.is_empty(), first_refusal) {
            (true, Some(r)) => Err(r),
            _ => Ok(passed),
        }
    }
}

/// IPv4 addresses written as IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) are judged
/// as the IPv4 address they carry.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

fn is_metadata(addr: IpAddr) -> bool {
    entraguard_core::endpoint::is_cloud_metadata(addr)
}

/// The class of a non-public address, or `None` for a public one.
fn special_purpose(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private (RFC 1918)")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("carrier-grade NAT")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_multicast() || o[0] >= 240 {
                Some("multicast or reserved")
            } else if (o[0] == 192 && o[1] == 0 && o[2] == 0) || (o[0] == 198 && (o[1] & 0xfe) == 18) {
                Some("special-purpose")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique-local")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] == 0x2002 || (s[0] == 0 && s[1] == 0 && s[2..6] == [0, 0, 0, 0]) {
                // 6to4 and IPv4-compatible forms can carry private IPv4 addresses: refuse them.
                Some("IPv4-embedding")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn special_addresses_are_refused_by_default() {
        let g = TargetGuard::default();
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "64:ff9b::a00:1",
            "224.0.0.1",
        ] {
            assert!(g.check(ip(a)).is_err(), "{a} should be refused");
        }
        for a in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"] {
            assert!(g.check(ip(a)).is_ok(), "{a} should pass");
        }
    }

    #[test]
    fn allow_list_opens_private_ranges_but_never_metadata() {
        let g = TargetGuard::new(vec![
            "127.0.0.0/8".parse().expect("cidr"),
            "169.254.0.0/16".parse().expect("cidr"),
        ]);
        assert!(g.check(ip("127.0.0.1")).is_ok());
        assert!(g.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(g.check(ip("10.0.0.1")).is_err());
        let err = g.check(ip("169.254.169.254")).expect_err("metadata stays refused");
        assert!(err.to_string().contains("metadata"));
    }

    #[test]
    fn filter_keeps_public_addresses_of_a_mixed_answer() {
        let g = TargetGuard::default();
        let ok = g
            .filter(["10.0.0.1:443".parse().expect("a"), "1.1.1.1:443".parse().expect("a")])
            .expect("one passes");
        assert_eq!(ok, vec!["1.1.1.1:443".parse::<SocketAddr>().expect("a")]);
        assert!(g.filter(["10.0.0.1:443".parse().expect("a")]).is_err());
    }
}
