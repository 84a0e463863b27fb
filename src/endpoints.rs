//! Which endpoints a tenant may make the gateway connect to (SSRF guard, DESIGN §3).
//!
//! Tenant-owned URLs may not point at loopback, link-local (cloud metadata), private or other
//! internal addresses, nor at cluster-internal host names, unless the platform-owned namespace
//! annotation `llm.dgidgi.io/allowed-endpoints` lists them. The gateway repeats the address
//! check on the resolved IP at connect time with [`is_internal_ip`] and [`AllowList`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

use crate::redact::url_for_message;

/// Namespace annotation: comma-separated CIDRs and host names (`*.example.com` allowed).
pub const ALLOWED_ENDPOINTS_ANNOTATION: &str = "llm.dgidgi.io/allowed-endpoints";

/// Ports of the gateway itself (listener, admin); loopback URLs on them are always refused so a
/// tenant can never make the gateway call itself.
pub const GATEWAY_PORTS: [u16; 2] = [8080, 9090];

/// A parsed allow-list annotation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    cidrs: Vec<IpNet>,
    hosts: Vec<String>,
    /// Entries that are neither a CIDR, an IP nor a host name.
    pub invalid: Vec<String>,
}

impl AllowList {
    /// Parses the annotation value (absent: nothing private is allowed).
    pub fn parse(annotation: Option<&str>) -> Self {
        let mut list = Self::default();
        for entry in annotation.unwrap_or_default().split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            if let Ok(net) = entry.parse::<IpNet>() {
                list.cidrs.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                list.cidrs.push(IpNet::from(ip));
            } else if is_host_pattern(entry) {
                list.hosts.push(entry.to_ascii_lowercase());
            } else {
                list.invalid.push(entry.to_owned());
            }
        }
        list.cidrs.sort();
        list.cidrs.dedup();
        list.hosts.sort();
        list.hosts.dedup();
        list
    }

    /// The allow-list of a namespace, from its platform-owned annotation.
    pub fn for_namespace(annotations: &std::collections::BTreeMap<String, String>) -> Self {
        Self::parse(
            annotations
                .get(ALLOWED_ENDPOINTS_ANNOTATION)
                .map(String::as_str),
        )
    }

    /// The valid entries, normalised, for the gateway's connect-time check.
    pub fn entries(&self) -> Vec<String> {
        self.cidrs
            .iter()
            .map(ToString::to_string)
            .chain(self.hosts.iter().cloned())
            .collect()
    }

    /// Whether an address is allowed.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.cidrs.iter().any(|net| net.contains(&ip))
    }

    /// Whether a host name is allowed (exact, or `*.suffix` for any subdomain).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1
                        && host.ends_with(suffix)
                        && host[..host.len() - suffix.len()].ends_with('.')
                }
                None => *pattern == host,
            })
    }
}

fn is_host_pattern(entry: &str) -> bool {
    let name = entry.strip_prefix("*.").unwrap_or(entry);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Maps IPv4-mapped and IPv4-compatible IPv6 addresses to IPv4 so `::ffff:127.0.0.1` is
/// judged as `127.0.0.1`.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether an address is not on the public internet: loopback, unspecified, private, shared
/// (CGNAT), link-local (cloud metadata lives at 169.254.169.254), multicast, broadcast,
/// documentation and benchmarking ranges, IPv6 unique-local, and NAT64 forms of those.
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0; 4] {
        // NAT64: judge the embedded IPv4 address.
        let [.., c, d] = segments;
        let v4 = Ipv4Addr::new((c >> 8) as u8, c as u8, (d >> 8) as u8, d as u8);
        return is_internal_v4(v4);
    }
    segments[..6] == [0; 6] // ::/96: unspecified, loopback, deprecated IPv4-compatible
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
}

/// Host names that only resolve inside the cluster or the machine.
fn is_internal_host_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    !host.contains('.') // single label: resolved through cluster search domains
        || host == "localhost"
        || [".localhost", ".local", ".internal", ".svc", ".cluster.local", ".home.arpa"]
            .iter()
            .any(|suffix| host.ends_with(suffix))
}

/// Why an endpoint was refused; the message names the URL's host, never credentials.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// Not an absolute http(s) URL.
    #[error("{0:?} is not an absolute http or https URL")]
    NotHttpUrl(String),
    /// The URL carries user:password; keys belong in Secrets.
    #[error("endpoint URLs must not carry credentials; put the key in a Secret")]
    CredentialsInUrl,
    /// Internal address or host not on the allow-list.
    #[error(
        "{host} is an internal address; the namespace annotation {ALLOWED_ENDPOINTS_ANNOTATION} must allow it"
    )]
    NotAllowed {
        /// The host as written.
        host: String,
    },
    /// The gateway's own ports on loopback.
    #[error("{host}:{port} is the gateway itself")]
    GatewayItself {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Refuses URLs that carry user-info: a key pasted into a URL would end up in the ConfigMap.
/// Applies to every provider, platform ones included.
pub fn reject_credentials(raw: &str) -> Result<(), EndpointError> {
    match Url::parse(raw) {
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            Err(EndpointError::CredentialsInUrl)
        }
        _ => Ok(()),
    }
}

/// Checks a tenant-owned URL against the internal-address rules and the namespace allow-list.
pub fn check_tenant_endpoint(raw: &str, allow: &AllowList) -> Result<(), EndpointError> {
    let url = Url::parse(raw).map_err(|_| EndpointError::NotHttpUrl(url_for_message(raw)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EndpointError::NotHttpUrl(url_for_message(raw)));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::CredentialsInUrl);
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url
        .host()
        .ok_or_else(|| EndpointError::NotHttpUrl(url_for_message(raw)))?;
    let (display, internal, allowed, loopback) = match host {
        Host::Ipv4(v4) => {
            let ip = IpAddr::V4(v4);
            (
                v4.to_string(),
                is_internal_ip(ip),
                allow.allows_ip(ip),
                v4.is_loopback(),
            )
        }
        Host::Ipv6(v6) => {
            let ip = IpAddr::V6(v6);
            let loopback = canonical_ip(ip).is_loopback();
            (
                format!("[{v6}]"),
                is_internal_ip(ip),
                allow.allows_ip(ip),
                loopback,
            )
        }
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let loopback = name == "localhost" || name.ends_with(".localhost");
            let (internal, allowed) = (is_internal_host_name(&name), allow.allows_host(&name));
            (name, internal, allowed, loopback)
        }
    };
    if loopback && GATEWAY_PORTS.contains(&port) {
        return Err(EndpointError::GatewayItself {
            host: display,
            port,
        });
    }
    if internal && !allowed {
        return Err(EndpointError::NotAllowed { host: display });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        check_tenant_endpoint(url, &AllowList::default()).is_err()
    }

    #[test]
    fn public_endpoints_pass() {
        for url in [
            "https://api.openai.com/v1",
            "https://8.8.8.8/v1",
            "http://[2606:4700::1111]/",
        ] {
            assert!(!refused(url), "{url}");
        }
    }

    #[test]
    fn internal_endpoints_are_refused() {
        for url in [
            "http://localhost:11434",
            "http://127.0.0.1:11434",
            "http://127.1.2.3/",
            "http://[::1]:11434",
            "http://[::127.0.0.1]/",
            "http://[::a9fe:a9fe]/",
            "http://localhost./",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://10.0.0.5/",
            "http://172.16.1.1/",
            "http://192.168.1.10/",
            "http://100.64.0.1/",
            "http://0.0.0.0:8080/",
            "http://[fd00::1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://metadata.google.internal/",
            "http://ollama/",
            "http://ollama.team-a.svc/",
            "http://ollama.team-a.svc.cluster.local:11434/",
            "http://printer.local/",
            "http://foo.localhost/",
            "ftp://example.com/",
            "not a url",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
    }

    #[test]
    fn credentials_in_url_are_refused() {
        assert_eq!(
            check_tenant_endpoint(
                "https://user:sk-123@api.example.com/",
                &AllowList::default()
            ),
            Err(EndpointError::CredentialsInUrl)
        );
    }

    #[test]
    fn allow_list_admits_cidrs_and_hosts() {
        let allow = AllowList::parse(Some(
            "10.0.0.0/8, 127.0.0.1, ollama.team-a.svc.cluster.local, *.corp.example, bad entry!",
        ));
        assert_eq!(allow.invalid, vec!["bad entry!"]);
        assert!(check_tenant_endpoint("http://10.1.2.3:11434", &allow).is_ok());
        assert!(check_tenant_endpoint("http://127.0.0.1:11434", &allow).is_ok());
        assert!(
            check_tenant_endpoint("http://ollama.team-a.svc.cluster.local:11434", &allow).is_ok()
        );
        assert!(check_tenant_endpoint("http://llm.corp.example/", &allow).is_ok());
        assert!(check_tenant_endpoint("http://corp.example.local/", &allow).is_err());
        assert!(check_tenant_endpoint("http://192.168.0.1/", &allow).is_err());
        assert!(check_tenant_endpoint("http://169.254.169.254/", &allow).is_err());
        assert!(allow.allows_host("a.b.corp.example"));
        assert!(!allow.allows_host("corp.example"));
        assert!(!allow.allows_host("evilcorp.example"));
        assert_eq!(
            allow.entries(),
            vec![
                "10.0.0.0/8",
                "127.0.0.1/32",
                "*.corp.example",
                "ollama.team-a.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn gateway_ports_on_loopback_are_always_refused() {
        let allow = AllowList::parse(Some("127.0.0.0/8,localhost"));
        for url in [
            "http://127.0.0.1:8080/",
            "http://localhost:9090/metrics",
            "http://[::1]:8080/",
            "http://localhost.:8080/",
            "http://LOCALHOST.:9090/",
        ] {
            assert!(
                matches!(
                    check_tenant_endpoint(url, &allow),
                    Err(EndpointError::GatewayItself { .. })
                        | Err(EndpointError::NotAllowed { .. })
                ),
                "{url}"
            );
        }
        assert!(check_tenant_endpoint("http://localhost:11434/", &allow).is_ok());
    }
}
