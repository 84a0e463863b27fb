//! The connect-time half of the SSRF guard (DESIGN §3): tenant-owned endpoints were checked at
//! render time by URL; here the *resolved* addresses are checked too, so a public-looking name
//! that resolves to a private, loopback or metadata address (DNS rebinding) is refused unless
//! the namespace's `llm.dgidgi.io/allowed-endpoints` allows it. Each tenant namespace's
//! allow-list gets its own pooled client whose resolver applies it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;

use crate::config::Scope;
use crate::config::load::Snapshot;
use crate::endpoints::{AllowList, is_internal_ip};

/// A client whose connections may only reach what an allow-list permits.
pub type GuardedClient = Client<
    hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>,
    http_body_util::Full<bytes::Bytes>,
>;

/// Resolves names with the system resolver, then drops internal addresses the allow-list does
/// not cover; a name left with none fails to connect.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    allow: Arc<AllowList>,
}

/// Keeps the resolved addresses a tenant may reach.
pub fn permitted(
    host: &str,
    resolved: Vec<SocketAddr>,
    allow: &AllowList,
) -> Result<Vec<SocketAddr>, std::io::Error> {
    if allow.allows_host(host) {
        return Ok(resolved);
    }
    let kept: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|address| !is_internal_ip(address.ip()) || allow.allows_ip(address.ip()))
        .collect();
    if kept.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{host} resolves only to internal addresses this namespace may not reach"),
        ));
    }
    Ok(kept)
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            permitted(&host, resolved, &allow).map(Vec::into_iter)
        })
    }
}

fn guarded_client(allow: AllowList) -> GuardedClient {
    super::upstream::pooled_client(HttpConnector::new_with_resolver(GuardedResolver {
        allow: Arc::new(allow),
    }))
}

/// One guarded client per distinct allow-list in a config (tenant providers and cli tenants).
#[derive(Default)]
pub struct GuardedClients {
    by_allow_list: HashMap<Vec<String>, GuardedClient>,
}

impl GuardedClients {
    /// Builds the clients a snapshot needs.
    pub fn for_snapshot(snapshot: &Snapshot) -> Self {
        let mut clients = Self::default();
        let lists = snapshot
            .config
            .providers
            .iter()
            .filter(|p| p.scope == Scope::Tenant)
            .map(|p| &p.allowed_endpoints)
            .chain(
                snapshot
                    .config
                    .tenants
                    .iter()
                    .filter(|t| t.cli.is_some())
                    .map(|t| &t.allowed_endpoints),
            );
        for list in lists {
            clients
                .by_allow_list
                .entry(list.clone())
                .or_insert_with(|| guarded_client(AllowList::parse(Some(&list.join(",")))));
        }
        clients
    }

    /// The client for an allow-list (present for every list of the snapshot it was built for).
    pub fn get(&self, allowed_endpoints: &[String]) -> Option<&GuardedClient> {
        self.by_allow_list.get(allowed_endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn rebinding_to_internal_addresses_is_refused() {
        let none = AllowList::default();
        assert!(permitted("api.example.com", vec![addr("93.184.216.34:0")], &none).is_ok());
        for internal in [
            "127.0.0.1:0",
            "169.254.169.254:0",
            "10.1.2.3:0",
            "[::1]:0",
            "[fd00::1]:0",
        ] {
            let error = permitted("evil.example.com", vec![addr(internal)], &none).unwrap_err();
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{internal}"
            );
        }
        // Mixed answers keep only the public addresses.
        let kept = permitted(
            "mixed.example.com",
            vec![addr("10.0.0.1:0"), addr("93.184.216.34:0")],
            &none,
        )
        .unwrap();
        assert_eq!(kept, vec![addr("93.184.216.34:0")]);
    }

    #[test]
    fn the_allow_list_admits_by_cidr_or_host_name() {
        let allow = AllowList::parse(Some("10.0.0.0/8,ollama.corp.example"));
        assert!(permitted("llm.example.com", vec![addr("10.9.9.9:0")], &allow).is_ok());
        assert!(permitted("ollama.corp.example", vec![addr("192.168.1.5:0")], &allow).is_ok());
        assert!(permitted("llm.example.com", vec![addr("192.168.1.5:0")], &allow).is_err());
    }
}
