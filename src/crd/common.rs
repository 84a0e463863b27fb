//! Field types shared by the three custom resources: secret references, durations, money,
//! and the standard status conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::crypto::credential::{
    ACCESS_KEY_ID, CLIENT_ID, CLIENT_SECRET, SECRET_ACCESS_KEY, SESSION_TOKEN, TENANT_ID,
};

/// A key inside a Secret that lives in the *same namespace* as the resource naming it.
///
/// There is deliberately no `namespace` field: a reference can never leave its namespace, so a
/// tenant cannot point at platform Secrets (DESIGN §3).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as this resource.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 253").message("name must be 1-253 characters"))]
    pub name: String,
    /// Key inside the Secret's data that holds the value (default `apiKey`). Not read when
    /// `parts` is set.
    #[serde(default = "default_secret_key")]
    #[schemars(length(max = 253))]
    pub key: String,
    /// A credential of several parts, each read from a key of the same Secret (`key` is then
    /// not read): the parts are sealed together as one row of the key store, so rotating any of
    /// them re-seals the row. Which parts a type takes: docs/providers.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<CredentialParts>,
}

/// The Secret keys holding each part of a several-part credential.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialParts {
    /// AWS (type bedrock): the key holding the access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id: Option<String>,
    /// AWS: the key holding the secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key: Option<String>,
    /// AWS: the key holding the session token of temporary credentials (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub session_token: Option<String>,
    /// Microsoft Entra (type azure-openai): the key holding the directory (tenant) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tenant_id: Option<String>,
    /// Microsoft Entra: the key holding the application (client) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id: Option<String>,
    /// Microsoft Entra: the key holding the application's client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret: Option<String>,
}

impl CredentialParts {
    /// Each part named, as (part name, Secret key).
    pub fn named(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (ACCESS_KEY_ID, &self.access_key_id),
            (SECRET_ACCESS_KEY, &self.secret_access_key),
            (SESSION_TOKEN, &self.session_token),
            (TENANT_ID, &self.tenant_id),
            (CLIENT_ID, &self.client_id),
            (CLIENT_SECRET, &self.client_secret),
        ]
        .into_iter()
        .filter_map(|(part, key)| Some((part, key.as_deref()?)))
    }
}

fn default_secret_key() -> String {
    "apiKey".to_owned()
}

/// CEL rule shared by every duration field: digits followed by a unit, optionally repeated
/// (`200ms`, `5s`, `1m30s`). Parsed by [`parse_duration_ms`] with exactly the same grammar.
pub const DURATION_RULE: &str = "self.matches('^([0-9]+(ms|s|m|h))+$')";

/// CEL rule for timeouts: a duration as in [`DURATION_RULE`] that is not zero.
pub const TIMEOUT_RULE: &str = "self.matches('^([0-9]+(ms|s|m|h))+$') && self.matches('[1-9]')";

/// Parses a timeout: a duration that must be greater than zero.
pub fn parse_timeout_ms(text: &str) -> Result<u64, DurationError> {
    match parse_duration_ms(text)? {
        0 => Err(DurationError::Zero(text.to_owned())),
        ms => Ok(ms),
    }
}

/// Parses a duration string such as `200ms`, `5s` or `1m30s` into whole milliseconds.
///
/// Kubernetes users write durations as strings; the CRDs validate them with [`DURATION_RULE`]
/// and the renderer converts them here, so the gateway only ever sees integers.
pub fn parse_duration_ms(text: &str) -> Result<u64, DurationError> {
    let invalid = || DurationError::Syntax(text.to_owned());
    if text.is_empty() {
        return Err(invalid());
    }
    let bytes = text.as_bytes();
    let mut total: u64 = 0;
    let mut index = 0;
    while index < bytes.len() {
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        if start == index {
            return Err(invalid());
        }
        let number: u64 = text[start..index].parse().map_err(|_| invalid())?;
        let unit_ms: u64 = if text[index..].starts_with("ms") {
            index += 2;
            1
        } else {
            let unit = bytes.get(index).copied().ok_or_else(invalid)?;
            index += 1;
            match unit {
                b's' => 1_000,
                b'm' => 60_000,
                b'h' => 3_600_000,
                _ => return Err(invalid()),
            }
        };
        total = number
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

/// A duration string that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// Not the `200ms` / `5s` / `1m30s` grammar.
    #[error(
        "invalid duration {0:?}: expected digits followed by ms, s, m or h (e.g. 200ms, 5s, 1m30s)"
    )]
    Syntax(String),
    /// A timeout of zero.
    #[error("timeout {0:?} must be greater than zero")]
    Zero(String),
}

/// Number of micro-USD in one USD: money is carried as integers from render on.
pub const MICROS_PER_USD: u64 = 1_000_000;

/// Converts a non-negative USD amount written as a decimal (`0.05`, `3.0`, `500`) into integer
/// micro-USD, rounding to the nearest micro-dollar. Returns `None` for negative, NaN or absurdly
/// large values so callers can report them instead of wrapping.
pub fn usd_to_micros(usd: f64) -> Option<u64> {
    if !usd.is_finite() || usd < 0.0 {
        return None;
    }
    let micros = (usd * MICROS_PER_USD as f64).round();
    // 2^53 is where f64 stops representing every integer; anything beyond is a typo.
    if micros > 9_007_199_254_740_992.0 {
        return None;
    }
    Some(micros as u64)
}

/// Condition status values as Kubernetes spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It could not be determined.
    Unknown,
}

impl ConditionStatus {
    /// The wire spelling (`"True"`, `"False"`, `"Unknown"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// One condition as computed by render, before it is merged with the previous status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// Condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason a person can act on.
    pub reason: &'static str,
    /// Human-readable explanation; never contains secret material.
    pub message: String,
}

impl ConditionUpdate {
    /// Builds a condition update.
    pub fn new(
        type_: &'static str,
        status: impl Into<ConditionStatus>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: status.into(),
            reason,
            message: message.into(),
        }
    }
}

/// Merges freshly computed conditions with the previous ones, keeping `lastTransitionTime` when a
/// condition's status did not change, as the Kubernetes API conventions require. Output order is
/// the order of `updates`, so the result is deterministic.
pub fn merge_conditions(
    previous: &[Condition],
    updates: Vec<ConditionUpdate>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    updates
        .into_iter()
        .map(|update| {
            let last_transition_time = previous
                .iter()
                .find(|old| old.type_ == update.type_ && old.status == update.status.as_str())
                .map(|old| old.last_transition_time.clone())
                .unwrap_or_else(|| Time(truncate_to_seconds(now)));
            Condition {
                type_: update.type_.to_owned(),
                status: update.status.as_str().to_owned(),
                reason: update.reason.to_owned(),
                message: update.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Kubernetes serializes `Time` with whole seconds; truncating here keeps a value read back from
/// YAML equal to the one we produced.
pub fn truncate_to_seconds(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

/// Formats a timestamp as RFC 3339 with whole seconds (`2026-11-25T11:52:27Z`).
pub fn format_timestamp(ts: Timestamp) -> String {
    truncate_to_seconds(ts)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_each_unit_and_compounds() {
        assert_eq!(parse_duration_ms("200ms"), Ok(200));
        assert_eq!(parse_duration_ms("5s"), Ok(5_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1s500ms"), Ok(1_500));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
    }

    #[test]
    fn durations_reject_garbage() {
        for bad in [
            "",
            "5",
            "s",
            "5 s",
            "-5s",
            "5sec",
            "1.5s",
            "5S",
            "ms",
            "99999999999999999999s",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn timeouts_must_be_positive() {
        assert_eq!(parse_timeout_ms("5s"), Ok(5_000));
        assert!(matches!(
            parse_timeout_ms("0s"),
            Err(DurationError::Zero(_))
        ));
        assert!(matches!(
            parse_timeout_ms("0m0ms"),
            Err(DurationError::Zero(_))
        ));
    }

    #[test]
    fn money_converts_to_exact_micros() {
        assert_eq!(usd_to_micros(0.05), Some(50_000));
        assert_eq!(usd_to_micros(3.0), Some(3_000_000));
        assert_eq!(usd_to_micros(0.15), Some(150_000));
        assert_eq!(usd_to_micros(500.0), Some(500_000_000));
        assert_eq!(usd_to_micros(0.000_001), Some(1));
        assert_eq!(usd_to_micros(-1.0), None);
        assert_eq!(usd_to_micros(f64::NAN), None);
        assert_eq!(usd_to_micros(1e30), None);
    }

    #[test]
    fn unchanged_condition_keeps_its_transition_time() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_000).unwrap();
        let first = merge_conditions(
            &[],
            vec![ConditionUpdate::new("Ready", true, "Resolved", "ok")],
            Some(1),
            t0,
        );
        let same = merge_conditions(
            &first,
            vec![ConditionUpdate::new("Ready", true, "Resolved", "still ok")],
            Some(2),
            t1,
        );
        assert_eq!(same[0].last_transition_time, first[0].last_transition_time);
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge_conditions(
            &same,
            vec![ConditionUpdate::new(
                "Ready",
                false,
                "SecretNotFound",
                "gone",
            )],
            Some(3),
            t1,
        );
        assert_eq!(flipped[0].last_transition_time, Time(t1));
    }
}
