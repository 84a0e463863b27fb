//! Usage into status: the gateways' `/usage` summaries become `status.usage` of each
//! LlmTenant, its `BudgetExceeded` condition, and an Event the first time each alert threshold
//! is crossed in a month. Combining and deciding are pure; [`poll`] does the HTTP.
//!
//! "First time in a month" needs no memory of its own: a threshold is announced when the spend
//! in status (same month) was below it and the new spend is at or above it, so a restart does
//! not announce it again.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::observed::Observed;
use super::plan::{EventWrite, Write};
use crate::crd::common::{ConditionStatus, ConditionUpdate, format_timestamp, merge_conditions};
use crate::crd::tenant::TenantUsage;
use crate::crd::{LlmTenant, LlmTenantStatus};
use crate::metering::meter::UsageSummary;
use crate::metering::plan::crossed_thresholds;
use crate::render::{ObjectKey, ResourceKind};

/// The condition this module owns.
pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";

/// One tenant's figures across every gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantTotals {
    /// Tokens today (UTC).
    pub tokens_today: u64,
    /// Micro-USD this month (UTC).
    pub spend_micro_usd: u64,
}

/// Every tenant's totals for one month.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// `YYYY-MM`.
    pub month: String,
    /// By `<namespace>/<name>`.
    pub tenants: BTreeMap<String, TenantTotals>,
}

/// Combines the answers of every gateway pod. Shared (Redis) counters are the same on every
/// pod: one answer is taken. Per-pod counters are summed, and then every pod must have
/// answered: a sum with a pod missing would lower the figures. Answers of an older month (a
/// pod not yet past midnight UTC at month end) are dropped.
pub fn combine(answers: &[Option<UsageSummary>]) -> Option<Totals> {
    let month = answers.iter().flatten().map(|s| s.month.clone()).max()?;
    let current: Vec<&UsageSummary> = answers
        .iter()
        .flatten()
        .filter(|s| s.month == month)
        .collect();
    let chosen: Vec<&UsageSummary> = match current.iter().find(|s| s.shared) {
        Some(shared) => vec![shared],
        None if answers.iter().any(Option::is_none) => return None,
        None => current,
    };
    let mut totals = Totals {
        month,
        tenants: BTreeMap::new(),
    };
    for summary in chosen {
        for tenant in &summary.tenants {
            let entry = totals.tenants.entry(tenant.tenant.clone()).or_default();
            entry.tokens_today += tenant.tokens_today;
            entry.spend_micro_usd += tenant.spend_this_month_micro_usd;
        }
    }
    Some(totals)
}

fn micro_to_usd(micro: u64) -> f64 {
    micro as f64 / 1_000_000.0
}

fn usd_to_micro(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1_000_000.0).round() as u64
    } else {
        0
    }
}

/// The status writes and Events that bring every LlmTenant's usage up to `totals`. Tenants
/// without a status yet (render has not written one) are left for the next poll; a tenant
/// whose figures did not change is not written.
pub fn plan_usage(totals: &Totals, observed: &Observed, now: Timestamp) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut events = Vec::new();
    for (key, object) in &observed.tenants {
        let Some(current) = object
            .data
            .get("status")
            .and_then(|s| serde_json::from_value::<LlmTenantStatus>(s.clone()).ok())
        else {
            continue;
        };
        let figures = totals
            .tenants
            .get(&key.to_string())
            .cloned()
            .unwrap_or_default();
        let previous = current.usage.as_ref().filter(|u| {
            u.updated_at
                .as_deref()
                .is_some_and(|at| at.starts_with(&totals.month))
        });
        let previous_spend = previous.map_or(0, |u| usd_to_micro(u.spend_this_month_usd));
        let unchanged = previous.is_some_and(|u| {
            u.tokens_today == figures.tokens_today && previous_spend == figures.spend_micro_usd
        });

        let spec: Option<LlmTenant> = serde_json::from_value(serde_json::json!({
            "apiVersion": crate::crd::API_VERSION, "kind": "LlmTenant",
            "metadata": object.metadata, "spec": object.data.get("spec"),
        }))
        .ok();
        let budget = spec.and_then(|t| t.spec.budget);
        let mut status = current.clone();
        if !unchanged {
            status.usage = Some(TenantUsage {
                tokens_today: figures.tokens_today,
                spend_this_month_usd: micro_to_usd(figures.spend_micro_usd),
                updated_at: Some(format_timestamp(now)),
            });
        }
        let others: Vec<_> = current
            .conditions
            .iter()
            .filter(|c| c.type_ != BUDGET_EXCEEDED)
            .cloned()
            .collect();
        let previous_budget: Vec<_> = current
            .conditions
            .iter()
            .filter(|c| c.type_ == BUDGET_EXCEEDED)
            .cloned()
            .collect();
        status.conditions = others;
        if let Some(budget) = &budget {
            let spend = (previous_spend, figures.spend_micro_usd);
            let conditions = BudgetReport {
                key,
                uid: object.uid(),
                generation: object.metadata.generation,
                budget,
                now,
            }
            .conditions(spend, previous_budget, unchanged, &mut events);
            status.conditions.extend(conditions);
        }
        if status != current
            && let Ok(value) = serde_json::to_value(&status)
        {
            writes.push(Write::Status {
                kind: ResourceKind::LlmTenant,
                key: key.clone(),
                status: value,
            });
        }
    }
    writes.extend(events.into_iter().map(Write::Event));
    writes
}

/// A tenant's budget against its spend: the `BudgetExceeded` condition, and the Events of the
/// lines crossed since the last report.
struct BudgetReport<'a> {
    key: &'a ObjectKey,
    uid: Option<String>,
    generation: Option<i64>,
    budget: &'a crate::crd::tenant::Budget,
    now: Timestamp,
}

impl BudgetReport<'_> {
    /// The condition to keep, given the spend (before, now) in micro-USD and the condition as
    /// it stands; Events for the budget reached and each alert line crossed go to `events`.
    fn conditions(
        &self,
        (previous_spend, spend): (u64, u64),
        previous: Vec<Condition>,
        unchanged: bool,
        events: &mut Vec<EventWrite>,
    ) -> Vec<Condition> {
        let (key, budget, now) = (self.key, self.budget, self.now);
        let limit = usd_to_micro(budget.monthly_usd);
        let exceeded = spend >= limit;
        let message = format!(
            "spent {:.2} of {:.2} USD this month (action: {})",
            micro_to_usd(spend),
            budget.monthly_usd,
            serde_json::to_value(budget.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        let (status, reason) = if exceeded {
            (ConditionStatus::True, "BudgetExceeded")
        } else {
            (ConditionStatus::False, "WithinBudget")
        };
        let update = ConditionUpdate::new(BUDGET_EXCEEDED, status, reason, message);
        let merged = merge_conditions(&previous, vec![update], self.generation, now);
        let was_exceeded = previous.iter().any(|c| c.status == "True");
        if exceeded && !was_exceeded {
            let note = format!("monthly budget of {:.2} USD reached", budget.monthly_usd);
            events.push(event(key, self.uid.clone(), "BudgetExceeded", note));
        }
        let crossed = crossed_thresholds(limit, &budget.alert_thresholds, previous_spend, spend);
        for threshold in crossed {
            let note = format!(
                "{threshold}% of the monthly budget of {:.2} USD reached",
                budget.monthly_usd
            );
            events.push(event(key, self.uid.clone(), "BudgetThresholdCrossed", note));
        }
        // Keep the old condition when only its message (the running spend) changed, so the
        // status is not rewritten for a message alone.
        let same = previous
            .first()
            .zip(merged.first())
            .is_some_and(|(a, b)| a.status == b.status && a.reason == b.reason && unchanged);
        if same { previous } else { merged }
    }
}

fn event(key: &ObjectKey, uid: Option<String>, reason: &str, note: String) -> EventWrite {
    EventWrite {
        kind: ResourceKind::LlmTenant,
        key: key.clone(),
        uid,
        warning: true,
        reason: reason.to_owned(),
        note,
    }
}

/// The admin `/usage` URLs of the gateway pods: the ready endpoints of the Service's
/// EndpointSlices, on the port named `admin` (or the only port).
pub fn admin_urls(slices: &[EndpointSlice]) -> Vec<String> {
    let mut urls = Vec::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("admin"))
            .or_else(|| ports.first())
            .and_then(|p| p.port);
        let Some(port) = port else { continue };
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if let (true, Some(address)) = (ready, endpoint.addresses.first()) {
                let host = if address.contains(':') {
                    format!("[{address}]")
                } else {
                    address.clone()
                };
                urls.push(format!("http://{host}:{port}/usage"));
            }
        }
    }
    urls.sort();
    urls
}

/// Why the gateways could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Listing the EndpointSlices failed.
    #[error("listing the gateway admin EndpointSlices: {0}")]
    Endpoints(String),
}

/// Asks one gateway for its summary; None when it does not answer properly.
pub async fn fetch(url: &str, token: &str, timeout: Duration) -> Option<UsageSummary> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let request = hyper::Request::get(url)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .ok()?;
    let response = tokio::time::timeout(timeout, client.request(request)).await;
    let response = match response {
        Ok(Ok(response)) if response.status().is_success() => response,
        Ok(Ok(response)) => {
            tracing::warn!(%url, status = %response.status(), "usage: gateway refused");
            return None;
        }
        _ => {
            tracing::warn!(%url, "usage: gateway did not answer");
            return None;
        }
    };
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    match serde_json::from_slice(&body) {
        Ok(summary) => Some(summary),
        Err(error) => {
            tracing::warn!(%url, %error, "usage: unreadable summary");
            None
        }
    }
}

/// Finds the gateway pods and asks each for its summary.
pub async fn poll(
    client: &Client,
    namespace: &str,
    service: &str,
    token: &str,
) -> Result<Option<Totals>, PollError> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let slices = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map_err(|e| PollError::Endpoints(crate::redact::serde_message(&e.to_string())))?;
    let urls = admin_urls(&slices.items);
    if urls.is_empty() {
        return Ok(None);
    }
    let mut answers = Vec::with_capacity(urls.len());
    for url in &urls {
        answers.push(fetch(url, token, Duration::from_secs(5)).await);
    }
    Ok(combine(&answers))
}
