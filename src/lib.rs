//! dgidgi: a Kubernetes operator and multi-tenant LLM gateway.
//!
//! Data flows one way: custom resources → [`render`] (pure) → [`config`] → gateway → providers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod crd;
pub mod crypto;
pub mod endpoints;
pub mod formats;
pub mod gateway;
pub mod metering;
pub mod metrics;
pub mod operator;
pub mod parallel;
pub mod providers;
pub mod redact;
pub mod render;
pub mod routing;
pub mod sse;
pub mod telemetry;
pub mod usage;
