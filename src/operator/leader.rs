//! Leader election on a `coordination.k8s.io` Lease, so several replicas are safe: only the
//! holder writes. The decision is pure ([`decide`]); [`LeaseLock`] does the get/create/replace
//! with the Lease's resourceVersion, so two replicas racing for it cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// What to do with the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// There is none: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else held it but stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// Decides from the Lease's spec (None: no Lease) who holds it at `now`.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> LeaseAction {
    let Some(spec) = lease else {
        return LeaseAction::Create;
    };
    if spec.holder_identity.as_deref() == Some(identity) {
        return LeaseAction::Renew;
    }
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let expired = match &spec.renew_time {
        Some(renewed) => renewed.0 + duration < now,
        None => true,
    };
    if holder.is_empty() || expired {
        LeaseAction::TakeOver
    } else {
        LeaseAction::Wait
    }
}

/// The Lease and this replica's identity.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    /// A lock on Lease `name` in `namespace`, held for `duration` after each renewal.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp, take: bool) -> LeaseSpec {
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            acquire_time: if take {
                Some(MicroTime(now))
            } else {
                previous.and_then(|p| p.acquire_time.clone())
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if take && previous.is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt: returns whether this replica holds the Lease afterwards. A lost race (409)
    /// is "not leader", not an error.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        // Any 404 is "no Lease" (not every API server says reason NotFound).
        let current = match self.api.get(&self.name).await {
            Ok(lease) => Some(lease),
            Err(kube::Error::Api(status)) if status.code == 404 => None,
            Err(error) => return Err(error),
        };
        let action = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let result = match (action, current) {
            (LeaseAction::Wait, _) => return Ok(false),
            (LeaseAction::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now, true)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (action, Some(mut lease)) => {
                let take = action == LeaseAction::TakeOver;
                lease.spec = Some(self.spec(lease.spec.as_ref(), now, take));
                // metadata.resourceVersion is kept: the replace fails if anyone wrote since.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Keeps trying to hold the Lease, renewing at a third of its duration, and publishes
    /// whether we are the leader. An error makes us step down: better no writer for a moment
    /// than two.
    pub async fn run(self, leader: watch::Sender<bool>) {
        let period = self.duration / 3;
        loop {
            let holding = match self.try_hold().await {
                Ok(holding) => holding,
                Err(error) => {
                    tracing::warn!(error = %crate::redact::serde_message(&error.to_string()), "lease: could not renew");
                    false
                }
            };
            leader.send_if_modified(|was| {
                let changed = *was != holding;
                if changed {
                    tracing::info!(leader = holding, "lease: leadership changed");
                }
                *was = holding;
                changed
            });
            tokio::time::sleep(period).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: Timestamp, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decides_who_holds_the_lease() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let recent = Timestamp::from_second(999_990).unwrap();
        let old = Timestamp::from_second(999_900).unwrap();
        assert_eq!(decide(None, "a", now), LeaseAction::Create);
        assert_eq!(
            decide(Some(&spec("a", old, 15)), "a", now),
            LeaseAction::Renew
        );
        assert_eq!(
            decide(Some(&spec("b", recent, 15)), "a", now),
            LeaseAction::Wait
        );
        assert_eq!(
            decide(Some(&spec("b", old, 15)), "a", now),
            LeaseAction::TakeOver
        );
        assert_eq!(
            decide(Some(&spec("", recent, 15)), "a", now),
            LeaseAction::TakeOver
        );
    }
}
