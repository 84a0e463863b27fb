//! `dgidgi render`: read YAML files and directories, render, write manifests and/or a gateway
//! config directory. All I/O of offline render lives here; the rendering itself is pure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::jiff::Timestamp;

use super::files::write_atomic;
use crate::config::{ACCESS_KEYS_FILE, KEY_STORE_FILE, MASTER_KEY_FILE};
use crate::render::manifests::{
    Documents, MANAGED_BY, MANAGED_BY_LABEL, MANIFESTS_DIR, OutputFile, STATUS_FILE,
    config_dir_files_of, documents, documents_and_access_keys, manifest_files_of,
};
use crate::render::{DEFAULT_PLATFORM_NAMESPACE, InputLoader, RenderContext, RenderOutput, render};

/// A ConfigMap or Secret holds at most 1 MiB of data (Kubernetes refuses more).
const OBJECT_LIMIT_BYTES: usize = 1024 * 1024;

/// Warn well before the limit.
const OBJECT_WARN_BYTES: usize = 900 * 1024;

/// Arguments of `dgidgi render`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("output").required(true).multiple(true).args(["out", "config_dir"]))]
pub struct RenderArgs {
    /// YAML files or directories (searched recursively for .yaml, .yml and .json) holding
    /// Namespaces, Secrets, LlmProviders, LlmTenants, RoutingPolicies and earlier outputs.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write Kubernetes manifests and status.yaml here. Earlier outputs found here are read
    /// back first, so keys and ciphertexts stay stable.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write the gateway's config directory here (gateway.yaml, keys.yaml, master-key.yaml,
    /// access-keys.yaml). Earlier outputs found here are read back first.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// The platform namespace.
    #[arg(long, default_value = DEFAULT_PLATFORM_NAMESPACE)]
    pub namespace: String,
    /// Exit with status 2 when any resource is not Ready, or when the gateway's ConfigMap or
    /// key store Secret would exceed Kubernetes' 1 MiB limit (for CI pipelines).
    #[arg(long)]
    pub strict: bool,
    /// Write the gateway config and key store in this many shards (`config-NNN.json.gz` and
    /// `keys-NNN.yaml` beside an index; ConfigMaps and Secrets `-NNN` under `--out`), each
    /// well under Kubernetes' 1 MiB, for fleets past a few thousand tenants. Use the count
    /// the chart's `config.shards` mounts. 1: one file (and object) each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
}

/// Runs `dgidgi render`.
pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let (output, oversized) = render_to(
        &args.inputs,
        args.out.as_deref(),
        args.config_dir.as_deref(),
        &args.namespace,
        args.shards,
    )?;

    let not_ready = output.report.not_ready();
    if args.strict && !(not_ready.is_empty() && oversized.is_empty()) {
        for line in &not_ready {
            eprintln!("not ready: {line}");
        }
        for line in &oversized {
            eprintln!("too large: {line}");
        }
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// The rendered objects whose data Kubernetes would refuse (over 1 MiB), and the shards past
/// the 256 KiB a shard is kept under (client-side apply's annotation doubles an object),
/// described.
pub fn oversized_objects(docs: &Documents) -> Vec<String> {
    use crate::config::shards;
    let mut found: Vec<String> = [
        (
            "the gateway config (ConfigMap dgidgi-gateway-config)",
            docs.gateway_config.len(),
        ),
        (
            "the key store (Secret dgidgi-gateway-keys)",
            docs.key_store.len(),
        ),
    ]
    .into_iter()
    .filter(|(_, len)| *len > OBJECT_LIMIT_BYTES)
    .map(|(what, len)| {
        let advice = if docs.config_shards.is_empty() {
            "; write it in shards (--shards, the chart's config.shards)"
        } else {
            ""
        };
        format!("{what} is {len} bytes; Kubernetes refuses more than {OBJECT_LIMIT_BYTES}{advice}")
    })
    .collect();
    let shard_sizes = docs
        .config_shards
        .iter()
        .enumerate()
        .map(|(number, bytes)| (shards::config_map_name(number), bytes.len()))
        .chain(
            docs.key_shards
                .iter()
                .enumerate()
                .map(|(number, text)| (shards::keys_secret_name(number), text.len())),
        );
    for (name, len) in shard_sizes {
        if len > shards::SHARD_LIMIT_BYTES {
            found.push(format!(
                "shard {name} is {len} bytes, over the {} a shard is kept under; raise the shard count",
                shards::SHARD_LIMIT_BYTES
            ));
        }
    }
    found
}

/// Reads `inputs` (and earlier outputs found in `out` and `config_dir`), renders, and writes
/// whichever outputs were asked for. Shared by `render` and `up`. Returns the output and the
/// objects too large for Kubernetes ([`oversized_objects`]), already logged.
pub fn render_to(
    inputs: &[PathBuf],
    out: Option<&Path>,
    config_dir: Option<&Path>,
    namespace: &str,
    shards: u32,
) -> anyhow::Result<(RenderOutput, Vec<String>)> {
    let mut loader = InputLoader::new(namespace)?;
    if let Some(dir) = config_dir {
        load_config_dir(&mut loader, dir)?;
    }
    if let Some(dir) = out {
        load_previous_out(&mut loader, dir)?;
    }
    load_paths(&mut loader, inputs)?;

    let mut ctx = RenderContext::new(namespace, now()?);
    ctx.shards = shards;
    let output = render(loader.finish(), &ctx, &mut rand::rng())?;
    // Offline there is no last good configuration to keep: refuse rather than render the
    // default tiers in its place.
    if let Some(problem) = &output.platform_problem {
        anyhow::bail!("{problem}");
    }

    // Serialized once for every output and check: at 100,000 tenants the compressed shards
    // alone take seconds.
    let docs = match config_dir {
        Some(dir) => {
            let (docs, access_keys) = documents_and_access_keys(&output)?;
            write_files(dir, &config_dir_files_of(&docs, access_keys)?)?;
            docs
        }
        None => documents(&output)?,
    };
    if let Some(dir) = out {
        let files = manifest_files_of(&output, &docs)?;
        write_files(dir, &files)?;
        prune_stale(&dir.join(MANIFESTS_DIR), dir, &files)?;
    }
    let oversized = oversized_objects(&docs);
    summarize(&output, &docs, &oversized);
    Ok((output, oversized))
}

/// "Now", or `SOURCE_DATE_EPOCH` for reproducible pipelines.
fn now() -> anyhow::Result<Timestamp> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => {
            let seconds: i64 = epoch
                .trim()
                .parse()
                .context("SOURCE_DATE_EPOCH must be whole seconds")?;
            Timestamp::from_second(seconds).context("SOURCE_DATE_EPOCH is out of range")
        }
        Err(_) => Ok(Timestamp::now()),
    }
}

fn load_config_dir(loader: &mut InputLoader, dir: &Path) -> anyhow::Result<()> {
    let read = |name: &str| -> anyhow::Result<Option<Vec<u8>>> {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    };
    if let Some(bytes) = read(MASTER_KEY_FILE)? {
        loader.add_key_ring_file(&dir.join(MASTER_KEY_FILE).display().to_string(), &bytes)?;
    }
    if let Some(bytes) = read(KEY_STORE_FILE)? {
        loader.add_key_store_file(&dir.join(KEY_STORE_FILE).display().to_string(), &bytes)?;
    }
    // The key store's shards of an earlier sharded render, whatever the count was then.
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name
                .to_str()
                .filter(|name| crate::config::shards::is_keys_file(name))
            else {
                continue;
            };
            if let Some(bytes) = read(name)? {
                loader.add_key_store_shard(&dir.join(name).display().to_string(), &bytes)?;
            }
        }
    }
    if let Some(bytes) = read(ACCESS_KEYS_FILE)? {
        let path = dir.join(ACCESS_KEYS_FILE);
        let text =
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        // Written as JSON (a YAML subset) since it grew with the fleet: read as JSON, many
        // times faster than the YAML parser; an older YAML file reads as YAML.
        let name = path.display().to_string();
        match text.trim_start().starts_with('{') {
            true => {
                let list: serde_yaml::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{name} is not the JSON it starts as"))?;
                loader.add_values(&name, vec![list])?;
            }
            false => loader.add_yaml(&name, &text)?,
        }
    }
    Ok(())
}

/// Reads an earlier `--out` (its manifests and status) back, when there is one.
fn load_previous_out(loader: &mut InputLoader, dir: &Path) -> anyhow::Result<()> {
    let manifests = dir.join(MANIFESTS_DIR);
    if manifests.is_dir() {
        load_paths(loader, &[manifests])?;
    }
    let status = dir.join(STATUS_FILE);
    if status.is_file() {
        load_paths(loader, &[status])?;
    }
    Ok(())
}

/// Reads files, and directories recursively in sorted order, into the loader.
fn load_paths(loader: &mut InputLoader, paths: &[PathBuf]) -> anyhow::Result<()> {
    for path in paths {
        for file in yaml_files(path)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            loader.add_yaml(&file.display().to_string(), &text)?;
        }
    }
    Ok(())
}

fn yaml_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", path.display()))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let child = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        let file_type = entry
            .file_type()
            .with_context(|| format!("reading {}", child.display()))?;
        if file_type.is_symlink() && child.is_dir() {
            // Following directory links could loop forever; name the target directly instead.
            tracing::warn!("skipping {}: a link to a directory", child.display());
        } else if child.is_dir() {
            files.extend(yaml_files(&child)?);
        } else if matches!(
            child.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(child);
        }
    }
    Ok(files)
}

fn write_files(dir: &Path, files: &[OutputFile]) -> anyhow::Result<()> {
    for file in files {
        // Names were validated on input; refuse anything that could still leave `dir`.
        let relative = Path::new(&file.path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            anyhow::bail!(
                "refusing to write {:?}: not a plain relative path",
                file.path
            );
        }
        let path = dir.join(relative);
        let unchanged = std::fs::read(&path).is_ok_and(|old| old == file.bytes);
        if !unchanged {
            write_atomic(&path, &file.bytes, file.private)?;
        }
    }
    Ok(())
}

/// Removes manifests of an earlier render that this render no longer produces (a deleted
/// tenant's access key, say). Only files that carry dgidgi's managed-by label are touched.
fn prune_stale(manifests: &Path, out: &Path, written: &[OutputFile]) -> anyhow::Result<()> {
    if !manifests.is_dir() {
        return Ok(());
    }
    for file in yaml_files(manifests)? {
        let relative = file
            .strip_prefix(out)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        if written.iter().any(|w| w.path == relative) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue;
        };
        let managed = value
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .and_then(serde_yaml::Value::as_str)
            == Some(MANAGED_BY);
        if managed {
            tracing::info!("removing stale output {}", file.display());
            std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        }
    }
    Ok(())
}

fn summarize(output: &RenderOutput, docs: &Documents, oversized: &[String]) {
    let report = &output.report;
    let not_ready = report.not_ready().len();
    tracing::info!(
        providers = output.config.providers.len(),
        tenants = output.config.tenants.len(),
        rules = output.config.routing.len(),
        key_store_rows = output.key_store.rows.len(),
        not_ready,
        "rendered"
    );
    for problem in oversized {
        tracing::error!(problem = ?problem, "a rendered object is too large for Kubernetes");
    }
    if (OBJECT_WARN_BYTES..=OBJECT_LIMIT_BYTES).contains(&docs.gateway_config.len()) {
        tracing::warn!(
            bytes = docs.gateway_config.len(),
            "the gateway config is close to the 1 MiB ConfigMap limit"
        );
    }
    if output.key_ring_generated {
        tracing::info!(
            "generated a new master key ring; keep it with the outputs, it decrypts the key store"
        );
    }
}
