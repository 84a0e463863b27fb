"""The Grafana dashboard (docs/grafana/dgidgi.json) parses, and every query uses only the metric
names of the gateway's metrics contract (docs/metrics.md, src/metrics/mod.rs), with labels
those series carry."""

from __future__ import annotations

import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The contract: metric -> its labels (histograms also have _bucket/_sum/_count and `le`).
COUNTERS = {
    "dgidgi_requests_total": {"tenant", "provider", "model", "source", "status"},
    "gen_ai_client_token_usage_total": {"tenant", "provider", "model", "source", "gen_ai_token_type"},
    "dgidgi_cost_micro_usd_total": {"tenant", "provider", "model", "source"},
    "dgidgi_limit_rejections_total": {"tenant", "limit"},
    "dgidgi_budget_rejections_total": {"tenant"},
    "dgidgi_budget_thresholds_crossed_total": {"tenant"},
    "dgidgi_upstream_errors_total": {"provider", "class"},
    "dgidgi_fallbacks_total": {"tenant"},
    "dgidgi_config_reloads_total": {"result"},
    "dgidgi_redis_errors_total": {"op", "class"},
    "dgidgi_redis_redeliveries_total": {"result"},
}
# Histograms carry no tenant label (buckets x tenants would be unbounded).
HISTOGRAMS = {
    "gen_ai_server_request_duration_seconds": {"provider", "model", "source", "le"},
    "gen_ai_server_time_to_first_token_seconds": {"provider", "model", "source", "le"},
}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "le", "label_values"}


def queries(dashboard: dict) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    found += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_dashboard_uses_only_contract_metrics_and_labels():
    dashboard = json.loads((ROOT / "docs/grafana/dgidgi.json").read_text())
    assert dashboard["uid"] and len(dashboard["panels"]) >= 10
    used = set()
    for expr in queries(dashboard):
        # Metric names, once the `by (...)` label lists are taken out.
        names = set(re.findall(r"\b(?:dgidgi|gen_ai)_[a-z_]+", re.sub(r"by \([^)]*\)", "", expr)))
        assert names, expr
        for name in names:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in COUNTERS or base in HISTOGRAMS, f"{name} is not a contract metric"
            used.add(name if name in COUNTERS else base)
        labels = set(re.findall(r"by \(([^)]*)\)", expr))
        labels = {l.strip() for group in labels for l in group.split(",")}
        labels |= set(re.findall(r"([a-z_]+)=~?\"", expr))
        labels |= set(re.findall(r"label_values\([a-z_]+, ([a-z_]+)\)", expr))
        allowed = set().union(*(COUNTERS.get(n) or HISTOGRAMS[re.sub(r"_(bucket|sum|count)$", "", n)] for n in names))
        assert labels <= allowed, (expr, labels - allowed)
    assert used == set(COUNTERS) | set(HISTOGRAMS), "every contract metric has a panel"
    # Every panel queries the data source chosen in the dashboard's variable.
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
