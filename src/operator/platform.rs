//! Which tiers the operator renders with. The platform configuration decides when it is valid
//! (or absent: the defaults). When it is invalid, the last valid one stays in force, so a typo
//! in a ConfigMap never changes a tenant's limits. An operator that starts on an invalid one
//! takes as last good the tiers its predecessor rendered with (recorded on the gateway
//! ConfigMap, [`crate::render::manifests::TIERS_ANNOTATION`]); without that record it has no
//! last good, and renders nothing until the configuration is fixed (the gateway keeps its
//! config).
//! Pure: the controller reports what this decides.

use super::observed::Observed;
use crate::render::TierTable;
use crate::render::platform::{PlatformConfigError, tiers};

/// What a pass renders with.
#[derive(Debug, PartialEq, Eq)]
pub enum TiersInForce {
    /// The configuration's own tiers (or the defaults, with none).
    Configured(TierTable),
    /// The configuration is invalid; the last good tiers stay.
    LastGood(TierTable, PlatformConfigError),
    /// The configuration is invalid and there was never a good one: render nothing.
    Hold(PlatformConfigError),
}

/// The last good tiers, across passes.
#[derive(Debug, Default)]
pub struct PlatformTiers {
    last_good: Option<TierTable>,
    last_problem: Option<PlatformConfigError>,
}

impl PlatformTiers {
    /// Reads the configuration's text (`None`: no ConfigMap) for this pass.
    pub fn update(&mut self, text: Option<&str>) -> TiersInForce {
        match tiers(text) {
            Ok(table) => {
                self.last_good = Some(table.clone());
                self.last_problem = None;
                TiersInForce::Configured(table)
            }
            Err(problem) => match &self.last_good {
                Some(table) => TiersInForce::LastGood(table.clone(), problem),
                None => TiersInForce::Hold(problem),
            },
        }
    }

    /// Decides a pass's tiers from what the cluster holds: the platform configuration, and
    /// (for an operator that has seen no valid one yet) the tiers its predecessor recorded.
    pub fn update_from(&mut self, observed: &Observed, platform_namespace: &str) -> TiersInForce {
        if !self.has_last_good()
            && let Some(recorded) = observed.recorded_tiers(platform_namespace)
        {
            self.seed(recorded);
        }
        self.update(observed.platform_config(platform_namespace))
    }

    /// Takes `table` as the last good tiers unless this operator has seen a valid
    /// configuration itself (what it read is newer than any record).
    pub fn seed(&mut self, table: TierTable) {
        if self.last_good.is_none() {
            self.last_good = Some(table);
        }
    }

    /// Whether a last good table is known.
    fn has_last_good(&self) -> bool {
        self.last_good.is_some()
    }

    /// Whether `problem` is new since the last report (so each is reported once, not every pass).
    pub fn is_new(&mut self, problem: &PlatformConfigError) -> bool {
        if self.last_problem.as_ref() == Some(problem) {
            return false;
        }
        self.last_problem = Some(problem.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTER: &str = "tiers: [{name: starter, requestsPerMinute: 20, tokensPerDay: 1000, concurrent: 1}]\ndefaultTier: starter\n";

    #[test]
    fn an_invalid_configuration_keeps_the_last_good_one_and_holds_without_one() {
        let mut platform = PlatformTiers::default();
        let broken = "tiers: [{name: starter, requestsPerMinute: 0}]";
        assert!(matches!(
            platform.update(Some(broken)),
            TiersInForce::Hold(_)
        ));
        let TiersInForce::Configured(good) = platform.update(Some(STARTER)) else {
            panic!("a valid configuration decides");
        };
        assert!(good.tiers.contains_key("starter"));
        match platform.update(Some(broken)) {
            TiersInForce::LastGood(kept, problem) => {
                assert_eq!(kept, good);
                assert!(platform.is_new(&problem));
                assert!(!platform.is_new(&problem), "reported once");
            }
            other => panic!("{other:?}"),
        }
        // A fresh operator seeded with the tiers its predecessor rendered with keeps them.
        let mut restarted = PlatformTiers::default();
        restarted.seed(good.clone());
        assert!(matches!(
            restarted.update(Some(broken)),
            TiersInForce::LastGood(kept, _) if kept == good
        ));
        // A seed never replaces what the operator has seen valid itself.
        let mut seen = PlatformTiers::default();
        seen.update(Some(STARTER));
        seen.seed(TierTable::default());
        assert!(matches!(
            seen.update(Some(broken)),
            TiersInForce::LastGood(kept, _) if kept == good
        ));
        // Deleting the ConfigMap is a valid choice: the defaults.
        assert_eq!(
            platform.update(None),
            TiersInForce::Configured(TierTable::default())
        );
    }
}
