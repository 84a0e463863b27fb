//! Admission: a request's reservation checked and taken in one step (refused with the limit
//! that refused it), journalled; token counting's own window; a provider key's quota.

use super::*;

impl Meter {
    /// Admits a request or says why not. The admission is sent to the ledger at once; await
    /// [`Ticket::journalled`] before answering the client.
    /// `unbounded_output_tokens`: the platform configuration's reservation for an output
    /// nothing bounds, over the gateway's own ([`ReservePolicy`]).
    pub async fn admit(
        &self,
        tenant: &TenantConfig,
        candidates: &[Candidate<'_>],
        size: RequestSize,
        source: &str,
        model: &str,
        unbounded_output_tokens: Option<u64>,
    ) -> Result<Ticket, Refused> {
        let started = Instant::now();
        let now = now_ms();
        let blocking = tenant
            .budget
            .as_ref()
            .is_some_and(|b| b.action == BudgetAction::Block);
        if blocking
            && candidates
                .iter()
                .any(|c| c.platform && c.model.and_then(|m| m.pricing.as_ref()).is_none())
        {
            return Err(Refused::Unpriced(model.to_owned()));
        }
        let request_id = request_id::new(now);
        let policy = ReservePolicy {
            unbounded_output_tokens: unbounded_output_tokens
                .unwrap_or(self.policy.unbounded_output_tokens),
            ..self.policy
        };
        let mut reservation = plan::reserve(tenant, candidates, size, &policy, now);
        let (result, shared) = self.take(&reservation.charges, request_id, now).await?;
        let admitted = match result {
            Ok(admitted) => {
                if let Some(granted) = admitted.output {
                    reservation.grant(granted);
                }
                admitted
            }
            Err(refusal) => {
                let refused = self.refused(tenant, &reservation, &refusal, now);
                if let Some(ledger) = &self.ledger {
                    let (status, reason) = match &refused {
                        Refused::Budget { .. } => (402, LimitKind::Budget.as_str()),
                        Refused::Limit { kind, .. } => (429, kind.as_str()),
                        _ => (503, "unavailable"),
                    };
                    ledger.refused(crate::metering::refusals::Refusal {
                        tenant_id: tenant.id.clone(),
                        ts_ms: now,
                        reason,
                        status,
                    });
                }
                return Err(refused);
            }
        };
        let journal = self.ledger.as_ref().map(|ledger| {
            ledger.admit(self.record(
                request_id,
                (&tenant.id, tenant.meter()),
                source,
                model,
                now,
                &reservation,
                reservation.tokens,
                reservation.cost_micro_usd,
            ))
        });
        Ok(Ticket {
            request_id,
            admitted,
            tenant: tenant.id.clone(),
            meter: tenant.meter().to_owned(),
            source: source.to_owned(),
            model: model.to_owned(),
            started,
            started_ms: now,
            shared,
            budget: tenant
                .budget
                .as_ref()
                .map(|b| (b.monthly_micro_usd, b.alert_thresholds.clone())),
            reservation,
            journal,
            size,
        })
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one record's fields, named at the call"
    )]
    pub(super) fn record(
        &self,
        request_id: u128,
        (tenant, meter): (&str, &str),
        source: &str,
        model: &str,
        now: u64,
        reservation: &Reservation,
        tokens: u64,
        cost: u64,
    ) -> Record {
        Record {
            request_id: request_id::text(request_id),
            timestamp: rfc3339(now),
            ts_ms: now,
            tenant_id: tenant.to_owned(),
            meter: meter.to_owned(),
            provider: String::new(),
            model: model.to_owned(),
            source: source.to_owned(),
            tokens_input: 0,
            tokens_output: 0,
            cached_input_tokens: 0,
            tokens,
            cost_micro_usd: cost,
            latency_ms: 0,
            status: 0,
            outcome: crate::metering::Outcome::Reserved.as_str().into(),
            fallback_count: 0,
            estimated: true,
            day: reservation.day.clone(),
            month: reservation.month.clone(),
        }
    }

    fn refused(
        &self,
        tenant: &TenantConfig,
        reservation: &Reservation,
        refusal: &Refusal,
        now: u64,
    ) -> Refused {
        let kind = match reservation.charges.get(refusal.index) {
            Some(Charge::Window { kind, .. } | Charge::Lease { kind, .. }) => *kind,
            Some(Charge::Amount {
                kind: Some(kind), ..
            }) => *kind,
            _ => LimitKind::Rpm,
        };
        let tenant_label = || TenantLabels {
            tenant: tenant.id.clone(),
        };
        if kind == LimitKind::Budget {
            self.metrics
                .budget_rejections
                .get_or_create(&tenant_label())
                .inc();
            return Refused::Budget {
                limit: refusal.limit,
                spent: refusal.current,
            };
        }
        self.metrics
            .limit_rejections
            .get_or_create(&LimitLabels {
                tenant: tenant.id.clone(),
                limit: kind.as_str(),
            })
            .inc();
        let retry_after_ms = match kind {
            LimitKind::Tpd => clock::until_next_day(now),
            LimitKind::Concurrency => 1_000,
            _ => refusal.retry_after_ms.max(1),
        };
        // A window frees no place before its oldest entry leaves (its retry-after); a lease
        // may free any moment, so a tenant at its concurrency cools only briefly: enough to
        // turn a flood into a few body reads a second, not enough to starve a busy tenant.
        let cooling = match kind {
            LimitKind::Rpm => Some(retry_after_ms),
            LimitKind::Concurrency => Some(CONCURRENCY_COOLING_MS),
            _ => None,
        };
        if let Some(cooling_ms) = cooling {
            self.cooling
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    tenant.id.clone(),
                    Cooling {
                        kind,
                        limit: refusal.limit,
                        until_ms: now + cooling_ms,
                    },
                );
        }
        Refused::Limit {
            kind,
            limit: refusal.limit,
            remaining: refusal.limit.saturating_sub(refusal.current),
            retry_after_ms,
        }
    }

    /// Admits a free request (token counting) at the tenant's requests per minute, in a window
    /// of its own (see [`plan::reserve_free`]). A refusal here does not cool the tenant's
    /// metered requests.
    pub async fn admit_free(&self, tenant: &TenantConfig) -> Result<(), Refused> {
        let now = now_ms();
        let Some(reservation) = plan::reserve_free(tenant, now) else {
            return Ok(());
        };
        let member = request_id::new(now);
        let (result, shared) = self.take(&reservation.charges, member, now).await?;
        match result {
            Ok(_) => {
                // Nothing to give back (a window entry leaves with its minute), but a shared
                // reservation's marker is taken now rather than left for a day.
                if shared {
                    self.give_back(&reservation.charges, &[], member, true)
                        .await;
                }
                Ok(())
            }
            Err(refusal) => {
                self.metrics
                    .limit_rejections
                    .get_or_create(&LimitLabels {
                        tenant: tenant.id.clone(),
                        limit: LimitKind::Rpm.as_str(),
                    })
                    .inc();
                Err(Refused::Limit {
                    kind: LimitKind::Rpm,
                    limit: refusal.limit,
                    remaining: refusal.limit.saturating_sub(refusal.current),
                    retry_after_ms: refusal.retry_after_ms.max(1),
                })
            }
        }
    }

    /// The refusal of a tenant this replica refused for requests per minute or concurrency
    /// within its `retry-after`: checked before the request's body is read (no Redis call, no
    /// parsing), so a tenant hammering past its limit costs the gateway its headers only. The
    /// answer is the one it got, with the time left. Counted like any refusal.
    pub fn still_refused(&self, tenant: &TenantConfig) -> Option<Refused> {
        let now = now_ms();
        let cooling = {
            let mut cooling = self.cooling.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = *cooling.get(tenant.id.as_str())?;
            if entry.until_ms <= now {
                cooling.remove(tenant.id.as_str());
                return None;
            }
            entry
        };
        self.metrics
            .limit_rejections
            .get_or_create(&LimitLabels {
                tenant: tenant.id.clone(),
                limit: cooling.kind.as_str(),
            })
            .inc();
        if let Some(ledger) = &self.ledger {
            ledger.refused(crate::metering::refusals::Refusal {
                tenant_id: tenant.id.clone(),
                ts_ms: now,
                reason: cooling.kind.as_str(),
                status: 429,
            });
        }
        Some(Refused::Limit {
            kind: cooling.kind,
            limit: cooling.limit,
            remaining: 0,
            retry_after_ms: cooling.until_ms - now,
        })
    }

    /// Takes a provider key's own quota for one attempt; `Err` means skip to the next target.
    pub async fn admit_provider(
        &self,
        provider_id: &str,
        limits: &ProviderLimitsConfig,
        ticket: &Ticket,
    ) -> Result<ProviderTicket, LimitKind> {
        let now = now_ms();
        let charges = plan::reserve_provider(provider_id, limits, ticket.reservation.tokens, now);
        // Each attempt is its own reservation: a retry or fallback to the same key is another
        // upstream request (another entry in the key's window), and settling one attempt, even
        // a copy resent long after, must never take another's marker.
        let member = request_id::new(now);
        if charges.is_empty() {
            return Ok(ProviderTicket {
                charges,
                member,
                shared: false,
            });
        }
        // The provider limit is advisory under a Redis outage: open or closed, the tenant's
        // own admission has already been decided.
        match self.take(&charges, member, now).await {
            Ok((Ok(_), shared)) => Ok(ProviderTicket {
                charges,
                member,
                shared,
            }),
            Ok((Err(refusal), _)) => {
                let kind = match charges.get(refusal.index) {
                    Some(Charge::Amount { .. }) => LimitKind::ProviderTpm,
                    _ => LimitKind::ProviderRpm,
                };
                self.metrics
                    .limit_rejections
                    .get_or_create(&LimitLabels {
                        tenant: ticket.tenant.clone(),
                        limit: kind.as_str(),
                    })
                    .inc();
                Err(kind)
            }
            Err(_) => Ok(ProviderTicket {
                charges: Vec::new(),
                member,
                shared: false,
            }),
        }
    }
}
