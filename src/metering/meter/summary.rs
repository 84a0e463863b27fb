//! The usage summary the operator reads, and the upkeep of the embedded counters and ledger.

use super::*;

impl Meter {
    /// The usage summary for the operator.
    pub async fn summary(&self, config: &GatewayConfig) -> UsageSummary {
        let now = now_ms();
        let today = Day::of(now);
        let (day, month) = (today.key(), today.month_key());
        let keys: Vec<String> = config
            .tenants
            .iter()
            .flat_map(|t| {
                [
                    keys::requests(t.meter(), &day),
                    keys::tokens(t.meter(), &day),
                    keys::spend(t.meter(), &month),
                ]
            })
            .collect();
        let (values, shared) = match &self.redis {
            Some(redis) => match redis.amounts(&keys).await {
                Ok(values) => (values, true),
                Err(error) => {
                    self.redis_failed("read", &error);
                    (self.local_amounts(&keys, now), false)
                }
            },
            None => (self.local_amounts(&keys, now), false),
        };
        let tenants = config
            .tenants
            .iter()
            .zip(values.chunks(3))
            .map(|(tenant, v)| {
                let spent = v.get(2).copied().unwrap_or(0);
                let budget = tenant.budget.as_ref();
                let limit = budget.map(|b| b.monthly_micro_usd);
                TenantUsageSummary {
                    tenant: tenant.id.clone(),
                    requests_today: v.first().copied().unwrap_or(0),
                    tokens_today: v.get(1).copied().unwrap_or(0),
                    spend_this_month_micro_usd: spent,
                    budget_micro_usd: limit,
                    thresholds_crossed: budget.map_or_else(Vec::new, |b| {
                        crossed_thresholds(b.monthly_micro_usd, &b.alert_thresholds, 0, spent)
                    }),
                    budget_exceeded: budget.is_some_and(|b| {
                        b.monthly_micro_usd > 0 && spent >= b.monthly_micro_usd
                            || b.monthly_micro_usd == 0 && b.action == BudgetAction::Block
                    }),
                }
            })
            .collect();
        UsageSummary {
            day,
            month,
            shared,
            tenants,
        }
    }

    fn local_amounts(&self, keys: &[String], now: u64) -> Vec<u64> {
        let book = self.book();
        keys.iter().map(|k| book.amount(k, now)).collect()
    }

    /// Drops expired counters; called every minute.
    pub fn sweep(&self) {
        self.book().sweep(now_ms(), MINUTE_MS);
        self.report_ledger_size();
    }

    /// Sets `dgidgi_ledger_bytes` to what the ledger's files take on disk (the database, its
    /// write-ahead log and index), so a filling volume is seen before it is full.
    pub fn report_ledger_size(&self) {
        let Some(dir) = &self.state_dir else {
            return;
        };
        let bytes: u64 = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let name = format!("{}{suffix}", crate::metering::ledger::LEDGER_FILE);
                std::fs::metadata(dir.join(name)).ok()
            })
            .map(|meta| meta.len())
            .sum();
        self.metrics
            .ledger_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}
