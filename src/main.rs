//! The `dgidgi` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers
/// (headers, JSON, futures), and glibc's malloc was an eighth of the gateway's time under load
/// (see docs/performance.md). The library itself stays allocator-agnostic.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    dgidgi::cli::Cli::parse().run()
}
