//! The headers that pass through the gateway as sent (issue #19): what a client sends that its
//! provider reads (Anthropic's `anthropic-version` and `anthropic-beta`, OpenAI's
//! `OpenAI-Beta`), and what a provider answers that identifies the request or describes the
//! provider's own limits.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{BetaFilterConfig, ProviderConfig, Scope};
use crate::formats::Format;
use crate::formats::dialect::dialect;

const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
const OPENAI_BETA: HeaderName = HeaderName::from_static("openai-beta");

/// Betas that change what a request costs: Anthropic's 1M-token context (priced as long
/// context) is sent on the platform's keys only when the model's price has long-context rates;
/// fast mode (several times the price) never, as no catalog price covers it. A tenant's own
/// keys get them as sent. A deny-list of what is known to change the price, not an allow-list
/// of what is known not to: coding agents turn on new betas with each release, and an
/// allow-list would switch their features off on the platform's keys until the next one.
const LONG_CONTEXT_BETA_PREFIX: &str = "context-1m-";
const UNPRICED_BETA_PREFIXES: [&str; 1] = ["fast-mode-"];

/// Which betas an upstream may receive.
#[derive(Clone, Copy, Debug)]
pub struct BetaPolicy<'a> {
    /// The provider's own allow and deny lists.
    filter: Option<&'a BetaFilterConfig>,
    /// The platform's key pays.
    platform: bool,
    /// The model's price has long-context rates.
    long_context_priced: bool,
}

impl<'a> BetaPolicy<'a> {
    /// Everything as sent (a cli endpoint).
    pub const AS_SENT: BetaPolicy<'static> = BetaPolicy {
        filter: None,
        platform: false,
        long_context_priced: false,
    };

    /// The policy of a provider serving `model`.
    pub fn for_provider(provider: &'a ProviderConfig, model: &str) -> Self {
        Self {
            filter: Some(&provider.betas).filter(|filter| !filter.is_empty()),
            platform: provider.scope == Scope::Platform,
            long_context_priced: provider
                .model(model)
                .and_then(|m| m.pricing)
                .is_some_and(|pricing| pricing.long_context.is_some()),
        }
    }

    /// Whether a beta (lower-cased) may pass.
    fn passes(&self, beta: &str) -> bool {
        let unpriced = self.platform
            && ((!self.long_context_priced && beta.starts_with(LONG_CONTEXT_BETA_PREFIX))
                || UNPRICED_BETA_PREFIXES
                    .iter()
                    .any(|prefix| beta.starts_with(prefix)));
        !beta.is_empty() && !unpriced && self.filter.is_none_or(|filter| filter.passes(beta))
    }

    /// Whether it may drop anything at all.
    fn filters(&self) -> bool {
        self.filter.is_some() || self.platform
    }
}

/// The client's headers an upstream of some format reads.
#[derive(Clone, Debug, Default)]
pub struct ClientHeaders {
    anthropic_version: Option<HeaderValue>,
    anthropic_beta: Option<HeaderValue>,
    openai_beta: Option<HeaderValue>,
}

impl ClientHeaders {
    /// Picks them out of a request's headers.
    pub fn from_request(headers: &HeaderMap) -> Self {
        Self {
            anthropic_version: headers.get(ANTHROPIC_VERSION).cloned(),
            anthropic_beta: headers.get(ANTHROPIC_BETA).cloned(),
            openai_beta: headers.get(OPENAI_BETA).cloned(),
        }
    }

    fn get(&self, name: &str) -> Option<&HeaderValue> {
        match name {
            "anthropic-version" => self.anthropic_version.as_ref(),
            "anthropic-beta" => self.anthropic_beta.as_ref(),
            "openai-beta" => self.openai_beta.as_ref(),
            _ => None,
        }
    }

    /// The headers to send an upstream of `format`, as its dialect lists them (the client's,
    /// else the format's default where it requires one), the betas as `policy` lets them
    /// through.
    pub fn for_upstream(
        &self,
        format: Format,
        policy: BetaPolicy<'_>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        for wanted in dialect(format).client_headers() {
            let value = match (self.get(wanted.name), wanted.default) {
                (Some(sent), _) if wanted.betas => betas(sent, &policy),
                (Some(sent), _) => Some(sent.clone()),
                (None, default) => default.map(HeaderValue::from_static),
            };
            if let Some(value) = value {
                headers.push((HeaderName::from_static(wanted.name), value));
            }
        }
        headers
    }
}

/// The betas of an `anthropic-beta` value that `policy` lets through (the value as sent when
/// it filters nothing); `None` when none is left. Betas are judged, and sent, lower-cased: a
/// `Context-1M-…` must not slip past a filter of `context-1m-…`.
fn betas(value: &HeaderValue, policy: &BetaPolicy<'_>) -> Option<HeaderValue> {
    if !policy.filters() {
        return Some(value.clone());
    }
    let text = value.to_str().ok()?.to_ascii_lowercase();
    let kept: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|beta| policy.passes(beta))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(",")).ok()
}

/// Provider response headers that identify the request (what SDKs surface as the request id,
/// what a support ticket quotes): passed back to every caller.
const REQUEST_ID_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("request-id"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("openai-processing-ms"),
];

/// Prefixes of provider response headers describing the provider's own limits: passed back
/// only to callers on their own keys (on the platform's, a tenant sees its own
/// `x-ratelimit-*`, and the platform key's quota is nobody else's business).
const PROVIDER_LIMIT_PREFIXES: [&str; 2] = ["anthropic-ratelimit-", "x-ratelimit-"];

/// Copies the provider response headers a caller gets into `into`.
pub fn copy_provider_headers(from: &HeaderMap, into: &mut HeaderMap, platform: bool) {
    for name in REQUEST_ID_HEADERS {
        if let Some(value) = from.get(&name) {
            into.insert(name, value.clone());
        }
    }
    if platform {
        return;
    }
    for (name, value) in from {
        if PROVIDER_LIMIT_PREFIXES
            .iter()
            .any(|prefix| name.as_str().starts_with(prefix))
        {
            into.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn policy(
        filter: Option<&BetaFilterConfig>,
        platform: bool,
        long_context_priced: bool,
    ) -> BetaPolicy<'_> {
        BetaPolicy {
            filter,
            platform,
            long_context_priced,
        }
    }

    const CLAUDE_CODE_BETAS: &str =
        "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14";

    #[test]
    fn the_clients_anthropic_headers_reach_anthropic_and_unpriced_betas_only_its_own_keys() {
        let client = ClientHeaders::from_request(&request(&[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", CLAUDE_CODE_BETAS),
        ]));
        let own = client.for_upstream(Format::Anthropic, policy(None, false, false));
        assert_eq!(own[1].1, CLAUDE_CODE_BETAS);
        let platform = client.for_upstream(Format::Anthropic, policy(None, true, false));
        assert_eq!(
            platform[0],
            (ANTHROPIC_VERSION, HeaderValue::from_static("2023-06-01"))
        );
        assert_eq!(
            platform[1].1,
            "claude-code-20250219,interleaved-thinking-2025-05-14"
        );
        // Priced at long-context rates, the platform's key may take it.
        let priced = client.for_upstream(Format::Anthropic, policy(None, true, true));
        assert_eq!(priced[1].1, CLAUDE_CODE_BETAS);
        // Nothing of Anthropic's reaches an OpenAI upstream.
        assert!(
            client
                .for_upstream(Format::OpenAi, policy(None, true, false))
                .is_empty()
        );
        // Without the client's version, the gateway's.
        let bare = ClientHeaders::default().for_upstream(Format::Anthropic, BetaPolicy::AS_SENT);
        assert_eq!(bare.len(), 1);
        assert_eq!(bare[0].1, crate::formats::anthropic::VERSION);
    }

    #[test]
    fn a_provider_filters_betas_by_its_allow_and_deny_lists() {
        let client =
            ClientHeaders::from_request(&request(&[("anthropic-beta", CLAUDE_CODE_BETAS)]));
        let deny = BetaFilterConfig {
            allow: vec![],
            deny: vec!["interleaved-thinking-*".into()],
        };
        let sent = client.for_upstream(Format::Anthropic, policy(Some(&deny), false, false));
        assert_eq!(sent[1].1, "claude-code-20250219,context-1m-2025-08-07");
        let allow = BetaFilterConfig {
            allow: vec!["claude-code-20250219".into()],
            deny: vec![],
        };
        let sent = client.for_upstream(Format::Anthropic, policy(Some(&allow), false, false));
        assert_eq!(sent[1].1, "claude-code-20250219");
        let none = BetaFilterConfig {
            allow: vec!["nothing-sent".into()],
            deny: vec![],
        };
        let sent = client.for_upstream(Format::Anthropic, policy(Some(&none), false, false));
        assert_eq!(sent.len(), 1, "no anthropic-beta header at all");
        // Letter case does not get a beta past a filter.
        let shouting = ClientHeaders::from_request(&request(&[(
            "anthropic-beta",
            "Context-1M-2025-08-07, INTERLEAVED-thinking-2025-05-14,Fast-Mode-2026-02-01",
        )]));
        let platform = shouting.for_upstream(Format::Anthropic, policy(None, true, false));
        assert_eq!(platform[1].1, "interleaved-thinking-2025-05-14");
        let denied = shouting.for_upstream(Format::Anthropic, policy(Some(&deny), false, false));
        assert_eq!(denied[1].1, "context-1m-2025-08-07,fast-mode-2026-02-01");
    }

    #[test]
    fn request_ids_come_back_to_everyone_and_provider_limits_only_on_own_keys() {
        let upstream = request(&[
            ("request-id", "req_011"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("set-cookie", "secret"),
        ]);
        let mut platform = HeaderMap::new();
        copy_provider_headers(&upstream, &mut platform, true);
        assert_eq!(platform.len(), 1);
        assert_eq!(platform["request-id"], "req_011");
        let mut own = HeaderMap::new();
        copy_provider_headers(&upstream, &mut own, false);
        assert_eq!(own.len(), 2);
        assert!(own.get("set-cookie").is_none());
    }
}
