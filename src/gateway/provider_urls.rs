//! Where each request to a provider goes. Most types: the catalog's chat path under the base
//! URL, as the format's dialect places its endpoints there. The clouds lay out their URLs
//! otherwise, and this is the one place that knows how:
//!
//! - **Azure OpenAI**: the v1 API (`{base}/openai/v1/chat/completions`, `…/embeddings`,
//!   `…/responses`; the body names the deployment), or with an `api-version` the deployment API
//!   (`{base}/openai/deployments/{deployment}/chat/completions?api-version=…`).
//! - **Vertex AI**: `{base}/v1/projects/{project}/locations/{region}/publishers/{publisher}/
//!   models/{model}` and a method: Gemini's (`:generateContent`, `:streamGenerateContent`), or
//!   for Claude `:rawPredict` and `:streamRawPredict`.
//!
//! A model is named here as the provider calls it ([`ProviderConfig::upstream_model`]).

use std::borrow::Cow;

use crate::config::ProviderConfig;
use crate::formats::dialect::dialect;
use crate::formats::{Format, path_segment as segment};
use crate::providers::ProviderKind;

/// Vertex AI's publisher of Anthropic's models.
const VERTEX_ANTHROPIC: &str = "anthropic";
/// Vertex AI's publisher of Google's models.
const VERTEX_GOOGLE: &str = "google";

/// The base URL and chat path a dialect places its endpoints under, and a query every one of
/// them carries (Azure's `api-version`). Borrowed from the provider's config for every type but
/// the clouds, so a plain provider's URL costs no more than it did.
struct Root<'a> {
    base: Cow<'a, str>,
    path: Cow<'a, str>,
    query: Option<String>,
}

impl Root<'_> {
    /// `url` with the root's query added.
    fn finish(&self, url: String) -> String {
        match &self.query {
            None => url,
            Some(query) if url.contains('?') => format!("{url}&{query}"),
            Some(query) => format!("{url}?{query}"),
        }
    }
}

/// The root of a provider's endpoints for `model` in `format`.
fn root<'a>(provider: &'a ProviderConfig, format: Format, model: &str) -> Option<Root<'a>> {
    let path = provider.kind.defaults().chat_path?;
    let base = provider.base_url.as_deref()?.trim_end_matches('/');
    let cloud = &provider.cloud;
    Some(match provider.kind {
        ProviderKind::AzureOpenai => match &cloud.api_version {
            None => Root {
                base: format!("{base}/openai/v1").into(),
                path: path.into(),
                query: None,
            },
            Some(version) => Root {
                base: format!("{base}/openai/deployments/{}", segment(model)).into(),
                path: path.into(),
                query: Some(format!("api-version={}", segment(version))),
            },
        },
        ProviderKind::VertexAi => {
            let publisher = if format == Format::Anthropic {
                VERTEX_ANTHROPIC
            } else {
                VERTEX_GOOGLE
            };
            Root {
                base: base.into(),
                path: path
                    .replace("{project}", &segment(cloud.project.as_deref()?))
                    .replace("{region}", &segment(cloud.region.as_deref()?))
                    .replace("{publisher}", publisher)
                    .into(),
                query: None,
            }
        }
        _ => Root {
            base: base.into(),
            path: path.into(),
            query: None,
        },
    })
}

/// The chat URL of a request in `format` for `model` (as the provider names it); `None`: the
/// provider serves no such endpoint.
pub fn chat_url(
    provider: &ProviderConfig,
    format: Format,
    model: &str,
    stream: bool,
) -> Option<String> {
    let root = root(provider, format, model)?;
    if provider.kind == ProviderKind::VertexAi && format == Format::Anthropic {
        let method = if stream {
            "streamRawPredict"
        } else {
            "rawPredict"
        };
        return Some(vertex_claude_url(&root, model, method));
    }
    if provider.kind == ProviderKind::AzureOpenai
        && format == Format::Responses
        && provider.cloud.api_version.is_some()
    {
        // The deployment API has no Responses endpoint under a deployment.
        return None;
    }
    let url = dialect(format).chat_url(&root.base, &root.path, model, stream)?;
    Some(root.finish(url))
}

/// The embeddings URL for `model` at a provider whose format serves embeddings.
pub fn embeddings_url(provider: &ProviderConfig, model: &str) -> Option<String> {
    let format = provider.kind.format_of(model);
    let endpoint = dialect(format).embeddings()?;
    if provider.kind == ProviderKind::VertexAi {
        // Vertex AI embeds through `:predict`, a format of its own the gateway does not speak.
        return None;
    }
    let root = root(provider, format, model)?;
    let url = endpoint.url(&root.base, &root.path, model)?;
    Some(root.finish(url))
}

/// The token-counting URL for `model` in `format` (Gemini's `countTokens`, Anthropic's
/// `count_tokens`); `None`: the provider counts no tokens in that format.
pub fn count_tokens_url(provider: &ProviderConfig, format: Format, model: &str) -> Option<String> {
    let root = root(provider, format, model)?;
    match (format, provider.kind) {
        (Format::Gemini, _) => Some(crate::formats::gemini::method_url(
            &root.base,
            &root.path,
            model,
            "countTokens",
        )),
        // Vertex counts Claude's tokens at a pseudo-model of its own, the model in the body.
        (Format::Anthropic, ProviderKind::VertexAi) => {
            Some(vertex_claude_url(&root, "count-tokens", "rawPredict"))
        }
        (Format::Anthropic, _) => {
            let url = dialect(format).chat_url(&root.base, &root.path, model, false)?;
            Some(format!("{url}/count_tokens"))
        }
        _ => None,
    }
}

/// A Claude model's method on Vertex AI. Vertex names a dated version `name@date` where
/// Anthropic names it `name-date`; the catalog shares Anthropic's names, so the date is moved
/// behind an `@` here (a name that has one already is kept).
fn vertex_claude_url(root: &Root, model: &str, method: &str) -> String {
    let model = vertex_claude_model(model);
    let path = root.path.replace("{model}", &segment(&model));
    root.finish(format!("{}{path}:{method}", root.base))
}

/// Vertex AI's name of a Claude model: `claude-sonnet-4-5-20250929` →
/// `claude-sonnet-4-5@20250929`.
pub fn vertex_claude_model(model: &str) -> String {
    match model.rsplit_once('-') {
        Some((name, date))
            if !model.contains('@')
                && date.len() == 8
                && date.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{name}@{date}")
        }
        _ => model.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CloudConfig, Scope};

    fn provider(kind: ProviderKind, base: &str, cloud: CloudConfig) -> ProviderConfig {
        let mut provider = ProviderConfig::mock_for_tests("ns/p", Scope::Platform);
        provider.kind = kind;
        provider.base_url = Some(base.to_owned());
        provider.cloud = cloud;
        provider
    }

    #[test]
    fn azure_v1_and_deployment_urls() {
        let v1 = provider(
            ProviderKind::AzureOpenai,
            "https://res.openai.azure.com/",
            CloudConfig::default(),
        );
        assert_eq!(
            chat_url(&v1, Format::OpenAi, "prod-4o", true).unwrap(),
            "https://res.openai.azure.com/openai/v1/chat/completions"
        );
        assert_eq!(
            chat_url(&v1, Format::Responses, "prod-4o", false).unwrap(),
            "https://res.openai.azure.com/openai/v1/responses"
        );
        assert_eq!(
            embeddings_url(&v1, "emb").unwrap(),
            "https://res.openai.azure.com/openai/v1/embeddings"
        );
        let deployed = provider(
            ProviderKind::AzureOpenai,
            "https://res.openai.azure.com",
            CloudConfig {
                api_version: Some("2024-10-21".into()),
                ..CloudConfig::default()
            },
        );
        assert_eq!(
            chat_url(&deployed, Format::OpenAi, "prod 4o/x", false).unwrap(),
            "https://res.openai.azure.com/openai/deployments/prod%204o%2Fx/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            embeddings_url(&deployed, "emb").unwrap(),
            "https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
        );
        assert_eq!(chat_url(&deployed, Format::Responses, "m", false), None);
    }

    #[test]
    fn vertex_urls_for_gemini_and_claude() {
        let vertex = provider(
            ProviderKind::VertexAi,
            "https://us-east5-aiplatform.googleapis.com",
            CloudConfig {
                region: Some("us-east5".into()),
                project: Some("my-project".into()),
                ..CloudConfig::default()
            },
        );
        let prefix = "https://us-east5-aiplatform.googleapis.com/v1/projects/my-project/locations/us-east5/publishers";
        assert_eq!(
            chat_url(&vertex, Format::Gemini, "gemini-4-neon", true).unwrap(),
            format!("{prefix}/google/models/gemini-4-neon:streamGenerateContent?alt=sse")
        );
        assert_eq!(
            chat_url(
                &vertex,
                Format::Anthropic,
                "claude-sonnet-4-5-20250929",
                false
            )
            .unwrap(),
            format!("{prefix}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
        );
        assert_eq!(
            chat_url(&vertex, Format::Anthropic, "claude-opus-5", true).unwrap(),
            format!("{prefix}/anthropic/models/claude-opus-5:streamRawPredict")
        );
        assert_eq!(
            count_tokens_url(&vertex, Format::Anthropic, "claude-opus-5").unwrap(),
            format!("{prefix}/anthropic/models/count-tokens:rawPredict")
        );
        assert_eq!(
            count_tokens_url(&vertex, Format::Gemini, "gemini-4-neon").unwrap(),
            format!("{prefix}/google/models/gemini-4-neon:countTokens")
        );
        assert_eq!(embeddings_url(&vertex, "gemini-embedding-001"), None);
    }

    #[test]
    fn other_types_keep_their_dialects_urls() {
        let openai = provider(
            ProviderKind::Openai,
            "https://api.openai.com/v1",
            CloudConfig::default(),
        );
        assert_eq!(
            chat_url(&openai, Format::OpenAi, "gpt-4o", false).unwrap(),
            "https://api.openai.com/v1/chat/completions"
        );
        let mut anthropic = openai.clone();
        anthropic.kind = ProviderKind::Anthropic;
        anthropic.base_url = Some("https://api.anthropic.com".into());
        assert_eq!(
            count_tokens_url(&anthropic, Format::Anthropic, "claude-opus-5").unwrap(),
            "https://api.anthropic.com/v1/messages/count_tokens"
        );
    }
}
