//! Provider types and their built-in defaults. Adding a provider type means one enum variant
//! here and one catalog entry in [`catalog`].

pub mod catalog;
pub mod grants;
pub mod mock;

use schemars::JsonSchema;

use crate::crypto::credential;
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
    /// Azure OpenAI: OpenAI's models in a customer's Azure resource, called by deployment.
    AzureOpenai,
    /// AWS Bedrock: Anthropic's, Meta's, Mistral's and Amazon's models through the Converse
    /// API, signed with an AWS access key (or a Bedrock API key).
    Bedrock,
    /// Google Vertex AI: Gemini models, and Anthropic's Claude models (`claude-*`) in their
    /// own format, in a customer's Google Cloud project.
    VertexAi,
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

    /// The wire format a request for `model` takes at this type: its [`Self::format`], except
    /// at a cloud that serves another maker's models in their maker's format (Claude on Vertex
    /// AI speaks Anthropic's Messages API).
    pub fn format_of(self, model: &str) -> crate::formats::Format {
        if self == Self::VertexAi && model.starts_with("claude-") {
            crate::formats::Format::Anthropic
        } else {
            self.format()
        }
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
            Self::AzureOpenai => "azure-openai",
            Self::Bedrock => "bedrock",
            Self::VertexAi => "vertex-ai",
            Self::Ollama => "ollama",
            Self::OpenaiCompatible => "openai-compatible",
            Self::Mock => "mock",
        }
    }

    /// Whether the type needs an API key (`credentialsRef`). Mirrors the CRD's CEL rule.
    pub fn requires_credentials(self) -> bool {
        !matches!(self, Self::Ollama | Self::Mock)
    }

    /// The named parts a credential of this type may have instead of one key (`None`: one key
    /// only). Mirrors the CRD's CEL rule on `credentialsRef.parts`.
    pub fn credential_parts(self) -> Option<CredentialParts> {
        match self {
            Self::AzureOpenai => Some(CredentialParts {
                required: &[
                    credential::TENANT_ID,
                    credential::CLIENT_ID,
                    credential::CLIENT_SECRET,
                ],
                optional: &[],
            }),
            Self::Bedrock => Some(CredentialParts {
                required: &[credential::ACCESS_KEY_ID, credential::SECRET_ACCESS_KEY],
                optional: &[credential::SESSION_TOKEN],
            }),
            _ => None,
        }
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

/// The parts of a several-part credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredentialParts {
    /// Parts it must have.
    pub required: &'static [&'static str],
    /// Parts it may have.
    pub optional: &'static [&'static str],
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
