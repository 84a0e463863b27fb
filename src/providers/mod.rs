//! Provider types and their built-in defaults. Adding a provider type means one enum variant
//! here and one catalog entry in [`catalog`].

pub mod catalog;
pub mod mock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The wire format and defaults family of an upstream LLM API.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI Chat Completions.
    Openai,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini generateContent.
    Gemini,
    /// Groq (OpenAI-compatible).
    Groq,
    /// Mistral (OpenAI-compatible).
    Mistral,
    /// Cohere v2 chat.
    Cohere,
    /// Perplexity Sonar (OpenAI-compatible, no tools).
    Perplexity,
    /// xAI Grok (OpenAI-compatible).
    Xai,
    /// DeepSeek (OpenAI-compatible).
    Deepseek,
    /// OpenRouter (OpenAI-compatible, provider-prefixed model ids).
    Openrouter,
    /// Together AI (OpenAI-compatible, open-weight models by organisation-prefixed id).
    Together,
    /// A local or self-hosted Ollama server.
    Ollama,
    /// Any other endpoint speaking the OpenAI format; needs a baseUrl.
    OpenaiCompatible,
    /// Built-in offline provider with deterministic answers, for demos and load tests.
    Mock,
}

impl ProviderKind {
    /// The wire format the type speaks: catalog data ([`catalog::ProviderDefaults::format`]),
    /// so a new type of an existing format is one catalog entry, and no `match` elsewhere
    /// can forget it and fall through to another format.
    pub fn format(self) -> crate::formats::Format {
        catalog::defaults(self).format
    }

    /// The spelling used in CRs, config and the key store's `provider` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Groq => "groq",
            Self::Mistral => "mistral",
            Self::Cohere => "cohere",
            Self::Perplexity => "perplexity",
            Self::Xai => "xai",
            Self::Deepseek => "deepseek",
            Self::Openrouter => "openrouter",
            Self::Together => "together",
            Self::Ollama => "ollama",
            Self::OpenaiCompatible => "openai-compatible",
            Self::Mock => "mock",
        }
    }

    /// Whether the type needs an API key (`credentialsRef`). Mirrors the CRD's CEL rule.
    pub fn requires_credentials(self) -> bool {
        !matches!(self, Self::Ollama | Self::Mock)
    }

    /// The built-in defaults for this type.
    pub fn defaults(self) -> &'static catalog::ProviderDefaults {
        catalog::defaults(self)
    }

    /// Whether the type searches the web on every request whatever it is asked, and prices it
    /// per request (Perplexity): its search options change nothing a reservation covers.
    pub fn searches_every_request(self) -> bool {
        self == Self::Perplexity
    }

    /// Whether the type serves OpenAI's Responses API unless its resource says otherwise.
    pub fn serves_responses_api(self) -> bool {
        self == Self::Openai
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
