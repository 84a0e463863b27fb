//! Built-in defaults per provider type: base URL and model catalog with capabilities and list
//! prices (USD per million tokens, from each provider's public pricing page). A provider CR that
//! lists its own `models` replaces the catalog for that provider.

use super::ProviderKind;

/// One catalog model.
#[derive(Debug)]
pub struct CatalogModel {
    /// The provider's model id.
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// Context window in tokens.
    pub context_window: u32,
    /// Largest completion in tokens.
    pub max_output_tokens: u32,
    /// Supports streaming.
    pub streaming: bool,
    /// Supports tools / function calling.
    pub function_calling: bool,
    /// USD per million input tokens.
    pub input_per_million: f64,
    /// USD per million output tokens.
    pub output_per_million: f64,
}

/// Defaults of one provider type.
#[derive(Debug)]
pub struct ProviderDefaults {
    /// Base URL used when the CR gives none (`None`: the CR must give one, or none is needed).
    pub base_url: Option<&'static str>,
    /// Whether models outside the catalog are accepted (aggregators and local servers, whose
    /// model lists are open-ended), as long as the CR lists no models of its own.
    pub open_catalog: bool,
    /// Path of the chat endpoint under the base URL, in the type's own wire format
    /// ([`crate::formats::Format::of`]); `{model}` stands for the model id where the format puts
    /// it in the path (Gemini). `None`: the type has no HTTP chat endpoint (the mock).
    pub chat_path: Option<&'static str>,
    /// The catalog.
    pub models: &'static [CatalogModel],
}

const fn model(
    name: &'static str,
    aliases: &'static [&'static str],
    context_window: u32,
    max_output_tokens: u32,
    function_calling: bool,
    input_per_million: f64,
    output_per_million: f64,
) -> CatalogModel {
    CatalogModel {
        name,
        aliases,
        context_window,
        max_output_tokens,
        streaming: true,
        function_calling,
        input_per_million,
        output_per_million,
    }
}

static OPENAI: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://api.openai.com/v1"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model("gpt-5", &[], 400_000, 128_000, true, 1.25, 10.0),
        model("gpt-5-mini", &[], 400_000, 128_000, true, 0.25, 2.0),
        model("gpt-4.1", &[], 1_047_576, 32_768, true, 2.0, 8.0),
        model("gpt-4.1-mini", &[], 1_047_576, 32_768, true, 0.4, 1.6),
        model("gpt-4.1-nano", &[], 1_047_576, 32_768, true, 0.1, 0.4),
        model("gpt-4o", &[], 128_000, 16_384, true, 2.5, 10.0),
        model("gpt-4o-mini", &[], 128_000, 16_384, true, 0.15, 0.6),
        model("o3", &[], 200_000, 100_000, true, 2.0, 8.0),
        model("o4-mini", &[], 200_000, 100_000, true, 1.1, 4.4),
    ],
};

static ANTHROPIC: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://api.anthropic.com"),
    open_catalog: false,
    chat_path: Some("/v1/messages"),
    models: &[
        model(
            "claude-opus-4-1-20250805",
            &["claude-opus-4-1"],
            200_000,
            32_000,
            true,
            15.0,
            75.0,
        ),
        model(
            "claude-sonnet-4-5-20250929",
            &["claude-sonnet-4-5"],
            200_000,
            64_000,
            true,
            3.0,
            15.0,
        ),
        model(
            "claude-sonnet-4-20250514",
            &["claude-sonnet-4"],
            200_000,
            64_000,
            true,
            3.0,
            15.0,
        ),
        model(
            "claude-haiku-4-5-20251001",
            &["claude-haiku-4-5"],
            200_000,
            64_000,
            true,
            1.0,
            5.0,
        ),
        model(
            "claude-3-5-haiku-20241022",
            &["claude-3-5-haiku-latest"],
            200_000,
            8_192,
            true,
            0.8,
            4.0,
        ),
    ],
};

static GEMINI: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://generativelanguage.googleapis.com/v1beta"),
    open_catalog: false,
    chat_path: Some("/models/{model}"),
    models: &[
        model("gemini-2.5-pro", &[], 1_048_576, 65_536, true, 1.25, 10.0),
        model("gemini-2.5-flash", &[], 1_048_576, 65_536, true, 0.3, 2.5),
        model(
            "gemini-2.5-flash-lite",
            &[],
            1_048_576,
            65_536,
            true,
            0.1,
            0.4,
        ),
        model("gemini-2.0-flash", &[], 1_048_576, 8_192, true, 0.1, 0.4),
    ],
};

static GROQ: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://api.groq.com/openai/v1"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model(
            "llama-3.3-70b-versatile",
            &[],
            131_072,
            32_768,
            true,
            0.59,
            0.79,
        ),
        model(
            "llama-3.1-8b-instant",
            &[],
            131_072,
            131_072,
            true,
            0.05,
            0.08,
        ),
        model(
            "openai/gpt-oss-120b",
            &[],
            131_072,
            65_536,
            true,
            0.15,
            0.75,
        ),
        model("openai/gpt-oss-20b", &[], 131_072, 65_536, true, 0.1, 0.5),
    ],
};

static MISTRAL: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://api.mistral.ai/v1"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model("mistral-large-latest", &[], 131_072, 32_768, true, 2.0, 6.0),
        model(
            "mistral-medium-latest",
            &[],
            131_072,
            32_768,
            true,
            0.4,
            2.0,
        ),
        model("mistral-small-latest", &[], 131_072, 32_768, true, 0.1, 0.3),
        model("codestral-latest", &[], 256_000, 32_768, true, 0.3, 0.9),
    ],
};

static COHERE: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://api.cohere.com"),
    open_catalog: false,
    chat_path: Some("/v2/chat"),
    models: &[
        model(
            "command-a-03-2025",
            &["command-a"],
            256_000,
            8_000,
            true,
            2.5,
            10.0,
        ),
        model(
            "command-r-plus-08-2024",
            &["command-r-plus"],
            128_000,
            4_000,
            true,
            2.5,
            10.0,
        ),
        model(
            "command-r-08-2024",
            &["command-r"],
            128_000,
            4_000,
            true,
            0.15,
            0.6,
        ),
    ],
};

static PERPLEXITY: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://api.perplexity.ai"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model("sonar", &[], 127_072, 8_000, false, 1.0, 1.0),
        model("sonar-pro", &[], 200_000, 8_000, false, 3.0, 15.0),
        model("sonar-reasoning-pro", &[], 127_072, 8_000, false, 2.0, 8.0),
    ],
};

static XAI: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://api.x.ai/v1"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model("grok-4", &["grok-4-0709"], 256_000, 64_000, true, 3.0, 15.0),
        model("grok-3", &[], 131_072, 32_768, true, 3.0, 15.0),
        model("grok-3-mini", &[], 131_072, 32_768, true, 0.3, 0.5),
    ],
};

static DEEPSEEK: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://api.deepseek.com"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model("deepseek-chat", &[], 128_000, 8_192, true, 0.28, 0.42),
        model("deepseek-reasoner", &[], 128_000, 65_536, false, 0.28, 0.42),
    ],
};

static OPENROUTER: ProviderDefaults = ProviderDefaults {
    base_url: Some("https://openrouter.ai/api/v1"),
    open_catalog: true,
    chat_path: Some("/chat/completions"),
    models: &[
        model("openai/gpt-4o", &[], 128_000, 16_384, true, 2.5, 10.0),
        model(
            "anthropic/claude-sonnet-4",
            &[],
            200_000,
            64_000,
            true,
            3.0,
            15.0,
        ),
        model(
            "google/gemini-2.5-flash",
            &[],
            1_048_576,
            65_536,
            true,
            0.3,
            2.5,
        ),
    ],
};

static OLLAMA: ProviderDefaults = ProviderDefaults {
    base_url: Some("http://localhost:11434"),
    open_catalog: true,
    chat_path: Some("/v1/chat/completions"),
    models: &[],
};

static OPENAI_COMPATIBLE: ProviderDefaults = ProviderDefaults {
    base_url: None,
    open_catalog: true,
    chat_path: Some("/chat/completions"),
    models: &[],
};

static MOCK: ProviderDefaults = ProviderDefaults {
    base_url: None,
    open_catalog: false,
    chat_path: None,
    models: &[
        model("mock-fast", &["mock"], 32_768, 4_096, true, 0.5, 1.5),
        model("mock-smart", &[], 200_000, 16_384, true, 3.0, 15.0),
    ],
};

/// Defaults for a provider type.
pub fn defaults(kind: ProviderKind) -> &'static ProviderDefaults {
    match kind {
        ProviderKind::Openai => &OPENAI,
        ProviderKind::Anthropic => &ANTHROPIC,
        ProviderKind::Gemini => &GEMINI,
        ProviderKind::Groq => &GROQ,
        ProviderKind::Mistral => &MISTRAL,
        ProviderKind::Cohere => &COHERE,
        ProviderKind::Perplexity => &PERPLEXITY,
        ProviderKind::Xai => &XAI,
        ProviderKind::Deepseek => &DEEPSEEK,
        ProviderKind::Openrouter => &OPENROUTER,
        ProviderKind::Ollama => &OLLAMA,
        ProviderKind::OpenaiCompatible => &OPENAI_COMPATIBLE,
        ProviderKind::Mock => &MOCK,
    }
}
