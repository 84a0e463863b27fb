//! Built-in defaults per provider type: base URL and model catalog with capabilities and list
//! prices (USD per million tokens, from each provider's public pricing page). A provider CR that
//! lists its own `models` replaces the catalog for that provider.

use super::ProviderKind;
use crate::formats::Format;

/// One catalog model.
#[derive(Clone, Copy, Debug)]
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
    /// Dearer rates for a request whose prompt is long (see [`LongContext`]).
    pub long_context: Option<LongContext>,
    /// An embedding model (served on `/v1/embeddings` only).
    pub embedding: bool,
}

/// The rates of a request whose input exceeds `above_input_tokens`, for all its tokens.
#[derive(Clone, Copy, Debug)]
pub struct LongContext {
    /// Input tokens beyond which these rates apply.
    pub above_input_tokens: u64,
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
    /// The wire format the type speaks (its dialect): how its requests are written, its
    /// answers and streams read, and its errors shaped.
    pub format: Format,
    /// Path of the chat endpoint under the base URL, in the type's own wire format; `{model}` stands for the model id where the format puts
    /// it in the path (Gemini). `None`: the type has no HTTP chat endpoint (the mock).
    pub chat_path: Option<&'static str>,
    /// The catalog.
    pub models: &'static [CatalogModel],
    /// Headers every request to the type carries (OpenRouter's app attribution).
    pub headers: &'static [(&'static str, &'static str)],
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
        long_context: None,
        embedding: false,
    }
}

/// An embedding model: input tokens only, no output.
const fn embedding(
    name: &'static str,
    context_window: u32,
    input_per_million: f64,
) -> CatalogModel {
    CatalogModel {
        name,
        aliases: &[],
        context_window,
        max_output_tokens: 0,
        streaming: false,
        function_calling: false,
        input_per_million,
        output_per_million: 0.0,
        long_context: None,
        embedding: true,
    }
}

impl CatalogModel {
    /// The same model with long-prompt rates.
    const fn long(mut self, above_input_tokens: u64, input: f64, output: f64) -> Self {
        self.long_context = Some(LongContext {
            above_input_tokens,
            input_per_million: input,
            output_per_million: output,
        });
        self
    }
}

// Sources and the date each price was read: docs/catalog.md. Current models come first; older
// ones stay while their provider serves them (a retired model is removed, so a request for it
// is a clear 404 rather than an upstream error).

/// OpenAI prices the whole request at 2× input and 1.5× output past 272K input tokens
/// (GPT-6.x, GPT-5.6).
const OPENAI_LONG: u64 = 272_000;

/// OpenAI's models, served by OpenAI and by Azure OpenAI.
const OPENAI_MODELS: &[CatalogModel] = &[
    model("gpt-6.2-sol", &[], 1_050_000, 128_000, true, 2.0, 10.0).long(OPENAI_LONG, 4.0, 15.0),
    model("gpt-6.2-astra", &[], 1_050_000, 128_000, true, 8.0, 40.0).long(OPENAI_LONG, 16.0, 60.0),
    model("gpt-6.1-sol", &[], 1_050_000, 128_000, true, 2.0, 10.0).long(OPENAI_LONG, 4.0, 15.0),
    model("gpt-6-astra", &[], 1_050_000, 128_000, true, 10.0, 50.0).long(OPENAI_LONG, 20.0, 75.0),
    model("gpt-6-sol", &[], 1_050_000, 128_000, true, 2.0, 10.0).long(OPENAI_LONG, 4.0, 15.0),
    model("gpt-6-luna", &[], 1_050_000, 128_000, true, 0.1, 0.5).long(OPENAI_LONG, 0.2, 0.75),
    model("gpt-5.6-luna", &[], 1_050_000, 128_000, true, 0.2, 1.2).long(OPENAI_LONG, 0.4, 1.8),
    model("gpt-5", &[], 400_000, 128_000, true, 1.25, 10.0),
    model("gpt-5-mini", &[], 400_000, 128_000, true, 0.25, 2.0),
    model("gpt-4.1", &[], 1_047_576, 32_768, true, 2.0, 8.0),
    model("gpt-4.1-mini", &[], 1_047_576, 32_768, true, 0.4, 1.6),
    model("gpt-4.1-nano", &[], 1_047_576, 32_768, true, 0.1, 0.4),
    model("gpt-4o", &[], 128_000, 16_384, true, 2.5, 10.0),
    model("gpt-4o-mini", &[], 128_000, 16_384, true, 0.15, 0.6),
    model("o3", &[], 200_000, 100_000, true, 2.0, 8.0),
    model("o4-mini", &[], 200_000, 100_000, true, 1.1, 4.4),
    embedding("text-embedding-3-small", 8_191, 0.02),
    embedding("text-embedding-3-large", 8_191, 0.13),
];

static OPENAI: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::OpenAi,
    base_url: Some("https://api.openai.com/v1"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: OPENAI_MODELS,
};

/// Anthropic's 1M-token context beta (`context-1m-2025-08-07`) on the 200K models that take
/// it prices the whole request at 2× input and 1.5× output past 200K input tokens.
const ANTHROPIC_LONG: u64 = 200_000;

/// Claude models, served by Anthropic and (in Anthropic's format) by Vertex AI.
const CLAUDE_MODELS: &[CatalogModel] = &[
    // Claude Code's `opus`, `sonnet`, `haiku` and `fable` defaults (2.1.3xx).
    model("claude-opus-5-5", &[], 1_000_000, 128_000, true, 4.0, 20.0),
    model(
        "claude-sonnet-5-5",
        &[],
        1_000_000,
        128_000,
        true,
        2.0,
        10.0,
    ),
    model("claude-haiku-5-5", &[], 1_000_000, 128_000, true, 0.1, 0.5).long(100_000, 0.5, 2.5),
    model("claude-fable-5-2", &[], 1_000_000, 128_000, true, 8.0, 40.0),
    model(
        "claude-fable-5-1",
        &[],
        1_000_000,
        128_000,
        true,
        10.0,
        50.0,
    ),
    model("claude-opus-5", &[], 1_000_000, 128_000, true, 5.0, 25.0),
    model("claude-sonnet-5", &[], 1_000_000, 128_000, true, 2.0, 10.0),
    model("claude-opus-4-8", &[], 1_000_000, 128_000, true, 5.0, 25.0),
    model("claude-opus-4-7", &[], 1_000_000, 128_000, true, 5.0, 25.0),
    model("claude-opus-4-6", &[], 200_000, 128_000, true, 5.0, 25.0),
    model("claude-sonnet-4-6", &[], 200_000, 128_000, true, 3.0, 15.0).long(
        ANTHROPIC_LONG,
        6.0,
        22.5,
    ),
    model(
        "claude-sonnet-4-5-20250929",
        &["claude-sonnet-4-5"],
        200_000,
        64_000,
        true,
        3.0,
        15.0,
    )
    .long(ANTHROPIC_LONG, 6.0, 22.5),
    model(
        "claude-opus-4-5-20251101",
        &["claude-opus-4-5"],
        200_000,
        64_000,
        true,
        5.0,
        25.0,
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
        "claude-opus-4-1-20250805",
        &["claude-opus-4-1"],
        200_000,
        32_000,
        true,
        15.0,
        75.0,
    ),
];

static ANTHROPIC: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::Anthropic,
    base_url: Some("https://api.anthropic.com"),
    open_catalog: false,
    chat_path: Some("/v1/messages"),
    models: CLAUDE_MODELS,
};

/// Gemini's chat models, served by the Gemini API and by Vertex AI.
const GEMINI_CHAT_MODELS: &[CatalogModel] = &[
    model("gemini-4-carbon", &[], 1_048_576, 65_536, true, 4.0, 20.0),
    model("gemini-4-argon", &[], 1_048_576, 65_536, true, 4.0, 20.0),
    model("gemini-4-neon", &[], 1_048_576, 65_536, true, 3.0, 15.0),
    model("gemini-4-hydrogen", &[], 1_048_576, 65_536, true, 1.5, 7.5),
    model("gemini-3.8-flash", &[], 1_048_576, 65_536, true, 0.75, 3.75),
    model(
        "gemini-3.5-flash-lite",
        &[],
        1_048_576,
        65_536,
        true,
        0.3,
        2.5,
    ),
    model(
        "gemini-3.1-pro-preview",
        &[],
        1_048_576,
        65_536,
        true,
        2.0,
        12.0,
    ),
];

const GEMINI_MODELS: [CatalogModel; GEMINI_CHAT_MODELS.len() + 1] = concat(
    GEMINI_CHAT_MODELS,
    &[embedding("gemini-embedding-001", 2_048, 0.15)],
);

static GEMINI: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::Gemini,
    base_url: Some("https://generativelanguage.googleapis.com/v1beta"),
    open_catalog: false,
    chat_path: Some("/models/{model}"),
    models: &GEMINI_MODELS,
};

static GROQ: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::OpenAi,
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
    headers: &[],
    format: Format::OpenAi,
    base_url: Some("https://api.mistral.ai/v1"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model("mistral-large-4-0", &[], 1_048_576, 262_144, true, 0.7, 2.1),
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
        embedding("mistral-embed", 8_192, 0.1),
    ],
};

static COHERE: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::Cohere,
    base_url: Some("https://api.cohere.com"),
    open_catalog: false,
    chat_path: Some("/v2/chat"),
    models: &[
        model(
            "command-a-reasoning-08-2025",
            &[],
            256_000,
            32_000,
            true,
            2.5,
            10.0,
        ),
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
        embedding("embed-v4.0", 128_000, 0.12),
    ],
};

static PERPLEXITY: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::OpenAi,
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
    headers: &[],
    format: Format::OpenAi,
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
    headers: &[],
    format: Format::OpenAi,
    base_url: Some("https://api.deepseek.com"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model(
            "deepseek-v4-flash",
            &[],
            1_000_000,
            384_000,
            true,
            0.14,
            0.28,
        ),
        model(
            "deepseek-v4-pro",
            &[],
            1_000_000,
            384_000,
            true,
            0.435,
            0.87,
        ),
        model("deepseek-chat", &[], 128_000, 8_192, true, 0.28, 0.42),
        model("deepseek-reasoner", &[], 128_000, 65_536, false, 0.28, 0.42),
    ],
};

static OPENROUTER: ProviderDefaults = ProviderDefaults {
    // App attribution (https://openrouter.ai/docs/api-reference/overview#headers).
    headers: &[("HTTP-Referer", "https://dgidgi.io"), ("X-Title", "dgidgi")],
    format: Format::OpenAi,
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

/// Together AI's serverless models (list prices from together.ai/pricing; input and output
/// priced alike). Together documents no output cap apart from the context, so the context is
/// the output bound the reservation uses.
static TOGETHER: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::OpenAi,
    base_url: Some("https://api.together.xyz/v1"),
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: &[
        model(
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            &[],
            131_072,
            131_072,
            true,
            0.88,
            0.88,
        ),
        model(
            "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
            &[],
            131_072,
            131_072,
            true,
            0.18,
            0.18,
        ),
        model(
            "Qwen/Qwen2.5-72B-Instruct-Turbo",
            &[],
            32_768,
            32_768,
            true,
            1.2,
            1.2,
        ),
        model(
            "deepseek-ai/DeepSeek-V3",
            &[],
            131_072,
            131_072,
            true,
            1.25,
            1.25,
        ),
    ],
};

/// Azure OpenAI: OpenAI's catalog and prices (Azure's global deployments list the same
/// prices); the resource's endpoint is the CR's `baseUrl`, and where each request goes (the
/// v1 API, or a deployment with an `api-version`) is `gateway::provider_urls`'.
static AZURE_OPENAI: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::OpenAi,
    base_url: None,
    open_catalog: false,
    chat_path: Some("/chat/completions"),
    models: OPENAI_MODELS,
};

/// AWS Bedrock through the Converse API (`{region}`: the CR's region). Claude 4.x is served
/// on demand only through a cross-region inference profile: `global.` at Anthropic's list
/// price, the geographic ones (`us.`, `eu.`) at 10 % more; Llama and Nova Premier through `us.`.
/// Prices: docs/catalog.md.
static BEDROCK: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::Bedrock,
    base_url: Some("https://bedrock-runtime.{region}.amazonaws.com"),
    open_catalog: false,
    chat_path: Some("/model/{model}/converse"),
    models: &[
        model(
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            &[],
            200_000,
            64_000,
            true,
            3.0,
            15.0,
        ),
        model(
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            &[],
            200_000,
            64_000,
            true,
            3.3,
            16.5,
        ),
        model(
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            &[],
            200_000,
            64_000,
            true,
            3.3,
            16.5,
        ),
        model(
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
            &[],
            200_000,
            64_000,
            true,
            1.0,
            5.0,
        ),
        model(
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            &[],
            200_000,
            64_000,
            true,
            1.1,
            5.5,
        ),
        model(
            "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            &[],
            200_000,
            64_000,
            true,
            1.1,
            5.5,
        ),
        model(
            "global.anthropic.claude-opus-4-5-20251101-v1:0",
            &[],
            200_000,
            64_000,
            true,
            5.0,
            25.0,
        ),
        model(
            "us.anthropic.claude-opus-4-5-20251101-v1:0",
            &[],
            200_000,
            64_000,
            true,
            5.5,
            27.5,
        ),
        model(
            "eu.anthropic.claude-opus-4-5-20251101-v1:0",
            &[],
            200_000,
            64_000,
            true,
            5.5,
            27.5,
        ),
        model(
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            &[],
            200_000,
            32_000,
            true,
            15.0,
            75.0,
        ),
        model(
            "us.meta.llama3-3-70b-instruct-v1:0",
            &[],
            128_000,
            8_192,
            true,
            0.72,
            0.72,
        ),
        model(
            "us.meta.llama4-maverick-17b-instruct-v1:0",
            &[],
            1_000_000,
            8_192,
            true,
            0.24,
            0.97,
        ),
        model(
            "us.meta.llama4-scout-17b-instruct-v1:0",
            &[],
            3_500_000,
            8_192,
            true,
            0.17,
            0.66,
        ),
        model(
            "mistral.mistral-large-2407-v1:0",
            &[],
            128_000,
            8_192,
            true,
            2.0,
            6.0,
        ),
        model(
            "amazon.nova-micro-v1:0",
            &[],
            128_000,
            10_000,
            true,
            0.035,
            0.14,
        ),
        model(
            "amazon.nova-lite-v1:0",
            &[],
            300_000,
            10_000,
            true,
            0.06,
            0.24,
        ),
        model("amazon.nova-pro-v1:0", &[], 300_000, 10_000, true, 0.8, 3.2),
        model(
            "us.amazon.nova-premier-v1:0",
            &[],
            1_000_000,
            10_000,
            true,
            2.5,
            12.5,
        ),
    ],
};

/// Vertex AI: Gemini's chat models and Anthropic's, at their makers' list prices (Vertex's
/// global endpoint; its regional endpoints charge 10 % more for Claude: list the models with
/// `pricing` to meter that). `{region}` is the CR's region; `global` has no regional host.
static VERTEX_AI: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::Gemini,
    base_url: Some("https://{region}-aiplatform.googleapis.com"),
    open_catalog: false,
    chat_path: Some(
        "/v1/projects/{project}/locations/{region}/publishers/{publisher}/models/{model}",
    ),
    models: &VERTEX_MODELS,
};

const VERTEX_MODELS: [CatalogModel; GEMINI_CHAT_MODELS.len() + CLAUDE_MODELS.len()] =
    concat(GEMINI_CHAT_MODELS, CLAUDE_MODELS);

/// Two catalogs as one (a cloud serving several makers' models), at compile time.
const fn concat<const N: usize>(
    first: &[CatalogModel],
    second: &[CatalogModel],
) -> [CatalogModel; N] {
    let mut out = [first[0]; N];
    let mut index = 0;
    while index < N {
        out[index] = if index < first.len() {
            first[index]
        } else {
            second[index - first.len()]
        };
        index += 1;
    }
    out
}

static OLLAMA: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::OpenAi,
    base_url: Some("http://localhost:11434"),
    open_catalog: true,
    chat_path: Some("/v1/chat/completions"),
    models: &[],
};

static OPENAI_COMPATIBLE: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::OpenAi,
    base_url: None,
    open_catalog: true,
    chat_path: Some("/chat/completions"),
    models: &[],
};

static MOCK: ProviderDefaults = ProviderDefaults {
    headers: &[],
    format: Format::OpenAi,
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
        ProviderKind::Together => &TOGETHER,
        ProviderKind::AzureOpenai => &AZURE_OPENAI,
        ProviderKind::Bedrock => &BEDROCK,
        ProviderKind::VertexAi => &VERTEX_AI,
        ProviderKind::Ollama => &OLLAMA,
        ProviderKind::OpenaiCompatible => &OPENAI_COMPATIBLE,
        ProviderKind::Mock => &MOCK,
    }
}
