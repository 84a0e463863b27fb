//! `dgidgi crds`: print the CRDs, or write them as one file each.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::crd;

/// Arguments of `dgidgi crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD (`<group>_<plural>.yaml`) into this directory instead of stdout.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// Prints or writes the CRDs.
pub fn run(args: &CrdsArgs) -> anyhow::Result<ExitCode> {
    match &args.out_dir {
        None => print!("{}", crd::all_yaml()?),
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for definition in crd::all() {
                let path = dir.join(crd::file_name(&definition));
                super::files::write_atomic(&path, crd::to_yaml(&definition)?.as_bytes(), false)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
