//! placeholder replaced below
use std::process::ExitCode;
use clap::Args;
/// Arguments of `dgidgi render`.
#[derive(Debug, Args)]
pub struct RenderArgs {}
/// Runs render.
pub fn run(_args: &RenderArgs) -> anyhow::Result<ExitCode> { Ok(ExitCode::SUCCESS) }
