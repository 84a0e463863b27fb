//! Pure translation between the LLM wire formats the gateway speaks. The OpenAI chat format is
//! the gateway's canonical form: every other format translates to and from it, requests,
//! responses and stream chunks (streams with explicit state). Nothing here does I/O.

pub mod openai;
