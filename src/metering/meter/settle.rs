//! Settling: a served request's counters moved to the provider's figures, its ledger record
//! finished, its metrics counted and its budget thresholds announced once.

use super::*;

impl Meter {
    /// Settles a provider ticket: released when the attempt failed before answering, moved to
    /// the real tokens when it served.
    pub async fn settle_provider(&self, ticket: ProviderTicket, served_tokens: Option<u64>) {
        if ticket.charges.is_empty() {
            return;
        }
        let settled = served_tokens.map(|tokens| Settlement {
            tokens,
            cost_micro_usd: 0,
            estimated: false,
        });
        let releases = plan::releases(&ticket.charges, settled);
        self.give_back(&ticket.charges, &releases, ticket.member, ticket.shared)
            .await;
    }

    /// Settles a request: `served` is `None` when no provider answered (everything released).
    pub async fn settle(&self, ticket: Ticket, served: Option<Served<'_>>) {
        // A report no real answer could give (no input at all, more output than the attempt
        // allowed, counts past any context) is treated as missing: the reservation stands.
        let reported = served.as_ref().and_then(|s| s.usage);
        let believed = served.as_ref().and_then(|s| {
            let usage = s.usage?;
            if plan::believable(&usage, s.output_bound) {
                return Some(usage);
            }
            self.unbelievable_usage(s.provider, &usage);
            None
        });
        let settlement = served.as_ref().map(|s| {
            // A provider error answer (4xx relayed) is not billed by providers.
            let usage = match believed {
                None if !(200..300).contains(&s.status) => Some(Usage::default()),
                usage => usage,
            };
            plan::settlement(
                &ticket.reservation,
                usage,
                s.pricing,
                s.platform,
                s.outcome == crate::metering::Outcome::Complete,
            )
        });
        let releases = plan::releases(&ticket.reservation.charges, settlement);
        let after = self
            .give_back(
                &ticket.reservation.charges,
                &releases,
                ticket.request_id,
                ticket.shared,
            )
            .await;
        if let (Some(_), Some((budget, percents))) = (settlement, &ticket.budget) {
            self.fire_thresholds(&ticket, &releases, &after, *budget, percents)
                .await;
        }
        let latency = ticket.started.elapsed();
        if let Some(ledger) = &self.ledger {
            let mut record = self.record(
                ticket.request_id,
                (&ticket.tenant, &ticket.meter),
                &ticket.source,
                &ticket.model,
                ticket.started_ms,
                &ticket.reservation,
                settlement.map_or(0, |s| s.tokens),
                settlement.map_or(0, |s| s.cost_micro_usd),
            );
            record.latency_ms = latency.as_millis() as u64;
            match &served {
                Some(s) => {
                    let usage = reported.unwrap_or_default();
                    record.provider = s.provider.to_owned();
                    record.model = s.model.to_owned();
                    record.tokens_input = usage.input_tokens;
                    record.tokens_output = usage.output_tokens;
                    record.cached_input_tokens = usage.cached_input_tokens;
                    record.status = s.status;
                    record.outcome = s.outcome.as_str().into();
                    record.fallback_count = s.fallback;
                    record.estimated = settlement.is_some_and(|s| s.estimated);
                }
                None => {
                    record.outcome = crate::metering::Outcome::Failed.as_str().into();
                    record.estimated = false;
                }
            }
            ledger.settle(
                record,
                Reserved {
                    tokens: ticket.reservation.tokens,
                    cost_micro_usd: ticket.reservation.cost_micro_usd,
                },
            );
        }
        if let (Some(served), Some(settlement)) = (served, settlement) {
            self.count(&ticket, &served, believed, settlement, latency);
        }
    }

    /// Counts a usage report that was not believed, and says so in the log the first time.
    fn unbelievable_usage(&self, provider: &str, usage: &Usage) {
        self.metrics
            .unbelievable_usage
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .inc();
        if !self
            .unbelievable_logged
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                provider = ?provider,
                input = usage.input_tokens,
                output = usage.output_tokens,
                "a provider reported usage no answer could have (no input, or more than allowed); the reservation is charged instead (counted in dgidgi_unbelievable_usage_total, logged once)"
            );
        }
    }

    fn count(
        &self,
        ticket: &Ticket,
        served: &Served<'_>,
        usage: Option<Usage>,
        settlement: Settlement,
        latency: Duration,
    ) {
        let route = self.metrics.route(
            &ticket.tenant,
            served.provider,
            served.model_label,
            &ticket.source,
        );
        route.answered(&self.metrics, served.status);
        route.took(latency);
        if let Some(first) = served.first_byte {
            route.first_byte_after(&self.metrics, first);
        }
        if let Some(usage) = usage {
            route.used(&self.metrics, usage.input_tokens, usage.output_tokens);
        }
        if served.fallback > 0 {
            self.metrics
                .fallbacks
                .get_or_create(&TenantLabels {
                    tenant: ticket.tenant.clone(),
                })
                .inc();
        }
        route.charged(settlement.cost_micro_usd);
    }

    async fn fire_thresholds(
        &self,
        ticket: &Ticket,
        releases: &[crate::metering::charge::Release],
        after: &[u64],
        budget: u64,
        percents: &[u32],
    ) {
        let spend_key = keys::spend(&ticket.meter, &ticket.reservation.month);
        let Some(spent) = releases
            .iter()
            .zip(after)
            .find(|(r, _)| matches!(r, crate::metering::charge::Release::Adjust { key, .. } if *key == spend_key))
            .map(|(_, v)| *v)
        else {
            return;
        };
        // Every line the spend has reached, not only those this settlement crossed: the spend
        // is the namespace's (`TenantConfig::meter`), so a neighbour's settlement may have taken
        // it past this tenant's line. Each is announced once: the marks decide, this replica's
        // own first (it keeps the ones it has seen), then Redis' for the fleet.
        for percent in crossed_thresholds(budget, percents, 0, spent) {
            let mark = keys::threshold(&ticket.tenant, &ticket.reservation.month, percent);
            if !self.book().mark_once(&mark) {
                continue;
            }
            let first = match (&self.redis, ticket.shared) {
                (Some(redis), true) => {
                    let ttl = clock::until_next_month(now_ms()) + 2 * clock::DAY_MS;
                    match redis.mark_once(&mark, ttl).await {
                        Ok(first) => first,
                        Err(error) => {
                            self.redis_failed("mark", &error);
                            true
                        }
                    }
                }
                _ => true,
            };
            if first {
                tracing::warn!(tenant = ?ticket.tenant, percent, "budget alert threshold crossed");
                self.metrics
                    .budget_thresholds
                    .get_or_create(&TenantLabels {
                        tenant: ticket.tenant.clone(),
                    })
                    .inc();
                if let Some(ledger) = &self.ledger {
                    ledger.threshold(
                        &ticket.tenant,
                        &ticket.reservation.month,
                        percent,
                        rfc3339(now_ms()),
                    );
                }
            }
        }
    }
}
