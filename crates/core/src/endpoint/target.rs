//! Checking a delivery target before it is stored: a URL (absolute, `https` unless plain http is
//! allowed, a host, no credentials, never a cloud metadata address, ASCII host names) or one
//! email address. The worker's SSRF guard shares the IP rules.

use super::{EndpointError, MAX_URL, TargetPolicy, bad};

/// Checks a delivery URL: absolute, `https` (or `http` when allowed), a host, no credentials.
pub fn validate_url(raw: &str, policy: TargetPolicy) -> Result<url::Url, EndpointError> {
    let raw = raw.trim();
    if raw.chars().count() > MAX_URL {
        return Err(bad("target", format!("URL is longer than {MAX_URL} characters")));
    }
    let url = url::Url::parse(raw).map_err(|e| match e {
        // The workspace builds `url` without Unicode host names (idna_adapter 1.0: it keeps the
        // ICU data out of every binary and the producer), and look-alike (homograph) host names
        // out of delivery targets: a Unicode name is entered in its ASCII form.
        url::ParseError::IdnaError => bad(
            "target",
            "has a non-ASCII host name: enter an internationalised domain name in its ASCII (punycode) form, `xn--…`",
        ),
        e => bad("target", format!("is not a valid URL: {e}")),
    })?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => {
            return Err(bad(
                "target",
                "must use https (plain http is allowed only with NOTIFY_ALLOW_HTTP=true)",
            ));
        }
        other => {
            return Err(bad("target", format!("scheme {other:?} is not supported; use https")));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("target", "URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("target", "URL must not carry user:password credentials"));
    }
    // Refused here what delivery would refuse anyway, naming the rule, rather than at the
    // first send.
    if raw.contains('\u{2026}') {
        return Err(bad(
            "target",
            "contains `\u{2026}`: a placeholder from an example or a shortened display, not a whole URL; paste the full URL",
        ));
    }
    if let Some(ip) = literal_ip(&url)
        && is_cloud_metadata(ip)
    {
        return Err(bad(
            "target",
            format!(
                "{ip} is a cloud metadata address: deliveries never go there (the worker's SSRF guard refuses it whatever NOTIFY_ALLOW_PRIVATE_TARGETS says)"
            ),
        ));
    }
    Ok(url)
}

/// The IP address a URL's host is written as, if it is one (IPv4 in IPv6 as the IPv4 address).
pub fn literal_ip(url: &url::Url) -> Option<std::net::IpAddr> {
    use std::net::IpAddr;
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        url::Host::Domain(_) => None,
    }
}

/// Cloud metadata services (AWS, Azure, GCP `169.254.169.254`, Alibaba `100.100.100.200`, AWS's
/// IPv6 `fd00:ec2::254`): never a delivery target, whatever is allow-listed (the worker's SSRF
/// guard and endpoint validation share this list).
pub fn is_cloud_metadata(addr: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    const AWS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match addr {
        IpAddr::V4(v4) => v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200),
        IpAddr::V6(v6) => v6 == AWS_V6,
    }
}

/// A syntactic check of one email address (`local@domain.tld`), no display names, no lists.
pub fn validate_email(raw: &str) -> Result<String, EndpointError> {
    let addr = raw.trim();
    let err = || bad("target", format!("{addr:?} is not one email address (expected local@domain)"));
    if addr.len() > 254
        || addr.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
    {
        return Err(err());
    }
    let (local, domain) = addr.rsplit_once('@').ok_or_else(err)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return Err(err());
    }
    // As for URLs (see `validate_url`): the SMTP transport reads ASCII domains only.
    if !domain.is_ascii() {
        return Err(bad(
            "target",
            format!("{addr:?} has a non-ASCII domain: enter it in its ASCII (punycode) form, `xn--…`"),
        ));
    }
    Ok(addr.to_owned())
}
