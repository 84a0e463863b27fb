//! `dgidgi config set|get|list`: the local CLI settings of the product brief
//! (`llm.source`, `llm.endpoint`, `llm.model`), kept in `<config home>/dgidgi/config.yaml`, and
//! the local gateway they describe (`dgidgi gateway` without `--config-dir`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::json;

/// Arguments of `dgidgi config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Set a setting, e.g. `dgidgi config set llm.endpoint http://localhost:11434`.
    Set {
        /// llm.source, llm.endpoint or llm.model.
        key: String,
        /// The value.
        value: String,
    },
    /// Print one setting.
    Get {
        /// llm.source, llm.endpoint or llm.model.
        key: String,
    },
    /// Print every setting, with defaults marked.
    List,
}

/// The settings, their defaults, and what each means.
const KEYS: [(&str, &str, &str); 3] = [
    (
        "llm.source",
        "cli",
        "where requests go: cli (a local Ollama-compatible endpoint), platform or tenant",
    ),
    (
        "llm.endpoint",
        "http://localhost:11434",
        "the Ollama-compatible endpoint for the cli source",
    ),
    (
        "llm.model",
        "llama3",
        "the model asked of that endpoint when a request names none",
    ),
];

/// Directory of dgidgi's local files: `$DGIDGI_CONFIG_HOME`, else `$XDG_CONFIG_HOME/dgidgi`,
/// else `~/.config/dgidgi`.
pub fn config_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DGIDGI_CONFIG_HOME") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("dgidgi"));
    }
    let home = std::env::var_os("HOME")
        .context("neither DGIDGI_CONFIG_HOME, XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config").join("dgidgi"))
}

fn settings_path() -> anyhow::Result<PathBuf> {
    Ok(config_home()?.join("config.yaml"))
}

/// The saved settings (defaults not filled in).
pub fn load() -> anyhow::Result<BTreeMap<String, String>> {
    let path = settings_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a map of settings", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// A setting's value, or its default.
pub fn value(settings: &BTreeMap<String, String>, key: &str) -> String {
    settings.get(key).cloned().unwrap_or_else(|| {
        KEYS.iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, default, _)| (*default).to_owned())
            .unwrap_or_default()
    })
}

fn validate(key: &str, value: &str) -> anyhow::Result<()> {
    match key {
        "llm.source" if !["cli", "platform", "tenant"].contains(&value) => {
            bail!("llm.source must be cli, platform or tenant")
        }
        "llm.endpoint" => {
            let url = url::Url::parse(value).context("llm.endpoint must be an absolute URL")?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                bail!("llm.endpoint must be an http or https URL");
            }
            if !url.username().is_empty() || url.password().is_some() {
                bail!("llm.endpoint must not carry credentials");
            }
            Ok(())
        }
        "llm.model" if value.trim().is_empty() => bail!("llm.model must not be empty"),
        "llm.source" | "llm.model" => Ok(()),
        other => {
            let known: Vec<&str> = KEYS.iter().map(|(k, _, _)| *k).collect();
            bail!(
                "unknown setting {other:?}; known settings: {}",
                known.join(", ")
            )
        }
    }
}

/// Runs `dgidgi config`.
pub fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        ConfigAction::Set { key, value } => {
            validate(key, value)?;
            let mut settings = load()?;
            settings.insert(key.clone(), value.clone());
            let path = settings_path()?;
            super::files::write_atomic(&path, serde_yaml::to_string(&settings)?.as_bytes(), false)?;
        }
        ConfigAction::Get { key } => {
            if !KEYS.iter().any(|(k, _, _)| k == key) {
                let known: Vec<&str> = KEYS.iter().map(|(k, _, _)| *k).collect();
                bail!(
                    "unknown setting {key:?}; known settings: {}",
                    known.join(", ")
                );
            }
            println!("{}", value(&load()?, key));
        }
        ConfigAction::List => {
            let settings = load()?;
            for (key, default, meaning) in KEYS {
                let shown = settings
                    .get(key)
                    .map_or(format!("{default} (default)"), Clone::clone);
                println!("{key} = {shown}    # {meaning}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The local settings as render inputs: one namespace and one cli-source tenant whose endpoint
/// the namespace allows (the user's own machine and the configured host are trusted here).
pub fn local_inputs() -> anyhow::Result<String> {
    let settings = load()?;
    let source = value(&settings, "llm.source");
    if source != "cli" {
        bail!(
            "`dgidgi gateway` without --config-dir serves the local cli settings, but llm.source is {source:?}; \
             set it with `dgidgi config set llm.source cli`, or render a config and pass --config-dir"
        );
    }
    let endpoint = value(&settings, "llm.endpoint");
    validate("llm.endpoint", &endpoint)?;
    let host = url::Url::parse(&endpoint)?
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .unwrap_or_default();
    let allowed = format!("127.0.0.1/32,::1/128,localhost,{host}");
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "local", "annotations": {"llm.dgidgi.io/allowed-endpoints": allowed}}});
    let tenant = json!({"apiVersion": crate::crd::API_VERSION, "kind": "LlmTenant",
        "metadata": {"name": "local", "namespace": "local"},
        "spec": {"source": "cli", "cli": {"endpoint": endpoint, "model": value(&settings, "llm.model")}}});
    Ok(format!(
        "{}---\n{}",
        serde_yaml::to_string(&namespace)?,
        serde_yaml::to_string(&tenant)?
    ))
}
