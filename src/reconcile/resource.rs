//! The four kstatus / Crossplane conditions of OtaProviders and FirmwarePackages, derived from
//! what one reconcile concluded.
//!
//! - `Ready`: the resource is usable (credentials accepted, package registered).
//! - `Synced`: the last reconcile reached the vendor and succeeded.
//! - `Reconciling`: work is under way or waiting on something that will come (kstatus InProgress).
//! - `Stalled`: blocked until a person fixes the spec, a Secret or the vendor side (kstatus Failed).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::conditions::{ConditionStatus, DesiredCondition, set_condition};
use crate::api::condition_types::{READY, RECONCILING, STALLED, SYNCED};
use crate::api::find_condition;

/// What one reconcile concluded, with a CamelCase reason and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything matches: Ready, Synced, nothing in progress.
    Ready {
        /// Why it is Ready, for example `Available`.
        reason: String,
        /// Details, for example the vendor's ID.
        message: String,
    },
    /// Work is under way (uploading, registering); the vendor calls so far succeeded.
    InProgress {
        /// What is happening.
        reason: String,
        /// Details.
        message: String,
    },
    /// Waiting for another object (the provider, a running campaign); nothing failed here.
    Waiting {
        /// What it waits for.
        reason: String,
        /// Details.
        message: String,
    },
    /// A retryable failure: it is retried with backoff. A resource that was Ready stays Ready.
    Retrying {
        /// The error class.
        reason: String,
        /// The error, without secrets.
        message: String,
    },
    /// Retrying cannot help until a person changes the spec, a Secret or the vendor side.
    Stalled {
        /// The error class.
        reason: String,
        /// What to fix.
        message: String,
    },
}

impl Outcome {
    /// The outcome's reason.
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Ready { reason, .. }
            | Outcome::InProgress { reason, .. }
            | Outcome::Waiting { reason, .. }
            | Outcome::Retrying { reason, .. }
            | Outcome::Stalled { reason, .. } => reason,
        }
    }

    /// The outcome's message.
    pub fn message(&self) -> &str {
        match self {
            Outcome::Ready { message, .. }
            | Outcome::InProgress { message, .. }
            | Outcome::Waiting { message, .. }
            | Outcome::Retrying { message, .. }
            | Outcome::Stalled { message, .. } => message,
        }
    }
}

/// Sets Ready, Synced, Reconciling and Stalled in `conditions` for `outcome`; returns whether
/// anything changed. Only status changes move `lastTransitionTime`, so the same outcome twice
/// changes nothing (and the caller writes nothing).
pub fn apply_outcome(
    conditions: &mut Vec<Condition>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    use ConditionStatus::{False, True};
    let reason = outcome.reason().to_string();
    let message = outcome.message().to_string();
    let was_ready = find_condition(conditions, READY).is_some_and(|c| c.status == "True");
    let (ready, synced, reconciling, stalled) = match outcome {
        Outcome::Ready { .. } => (
            Some(DesiredCondition::new(READY, True, &reason, &message)),
            DesiredCondition::new(SYNCED, True, "ReconcileSuccess", ""),
            DesiredCondition::new(RECONCILING, False, &reason, ""),
            DesiredCondition::new(STALLED, False, &reason, ""),
        ),
        Outcome::InProgress { .. } => (
            Some(DesiredCondition::new(READY, False, &reason, &message)),
            DesiredCondition::new(SYNCED, True, "ReconcileSuccess", ""),
            DesiredCondition::new(RECONCILING, True, &reason, &message),
            DesiredCondition::new(STALLED, False, &reason, ""),
        ),
        Outcome::Waiting { .. } | Outcome::Retrying { .. } => (
            (!was_ready).then(|| DesiredCondition::new(READY, False, &reason, &message)),
            DesiredCondition::new(SYNCED, False, &reason, &message),
            DesiredCondition::new(RECONCILING, True, &reason, &message),
            DesiredCondition::new(STALLED, False, &reason, ""),
        ),
        Outcome::Stalled { .. } => (
            Some(DesiredCondition::new(READY, False, &reason, &message)),
            DesiredCondition::new(SYNCED, False, &reason, &message),
            DesiredCondition::new(RECONCILING, False, &reason, ""),
            DesiredCondition::new(STALLED, True, &reason, &message),
        ),
    };
    let mut changed = false;
    if let Some(ready) = ready {
        changed |= set_condition(conditions, ready, generation, now);
    } else if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == READY)
        && existing.observed_generation != generation
    {
        existing.observed_generation = generation;
        changed = true;
    }
    for desired in [synced, reconciling, stalled] {
        changed |= set_condition(conditions, desired, generation, now);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn status_of<'a>(conditions: &'a [Condition], type_: &str) -> (&'a str, &'a str) {
        let condition = find_condition(conditions, type_).expect(type_);
        (condition.status.as_str(), condition.reason.as_str())
    }

    #[test]
    fn ready_sets_all_four_and_repeating_changes_nothing() {
        let mut conditions = Vec::new();
        let ready = Outcome::Ready {
            reason: "Available".into(),
            message: "registered as pkg-1".into(),
        };
        assert!(apply_outcome(&mut conditions, &ready, Some(1), &now(10)));
        assert_eq!(status_of(&conditions, READY), ("True", "Available"));
        assert_eq!(status_of(&conditions, SYNCED), ("True", "ReconcileSuccess"));
        assert_eq!(status_of(&conditions, RECONCILING).0, "False");
        assert_eq!(status_of(&conditions, STALLED).0, "False");
        let before = conditions.clone();
        assert!(!apply_outcome(&mut conditions, &ready, Some(1), &now(20)));
        assert_eq!(conditions, before);
    }

    #[test]
    fn a_transient_error_keeps_a_ready_resource_ready() {
        let mut conditions = Vec::new();
        let ready = Outcome::Ready {
            reason: "Available".into(),
            message: String::new(),
        };
        apply_outcome(&mut conditions, &ready, Some(1), &now(10));
        let retry = Outcome::Retrying {
            reason: "VendorUnavailable".into(),
            message: "HTTP 503".into(),
        };
        assert!(apply_outcome(&mut conditions, &retry, Some(2), &now(20)));
        assert_eq!(status_of(&conditions, READY), ("True", "Available"));
        assert_eq!(
            find_condition(&conditions, READY)
                .unwrap()
                .observed_generation,
            Some(2)
        );
        assert_eq!(
            status_of(&conditions, SYNCED),
            ("False", "VendorUnavailable")
        );
        assert_eq!(
            status_of(&conditions, RECONCILING),
            ("True", "VendorUnavailable")
        );
    }

    #[test]
    fn stalled_is_not_ready_and_not_reconciling() {
        let mut conditions = Vec::new();
        let stalled = Outcome::Stalled {
            reason: "ChecksumMismatch".into(),
            message: "expected sha256 aa, got bb".into(),
        };
        apply_outcome(&mut conditions, &stalled, Some(3), &now(10));
        assert_eq!(status_of(&conditions, READY), ("False", "ChecksumMismatch"));
        assert_eq!(
            status_of(&conditions, STALLED),
            ("True", "ChecksumMismatch")
        );
        assert_eq!(status_of(&conditions, RECONCILING).0, "False");
        assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        let waiting = Outcome::Waiting {
            reason: "ProviderNotReady".into(),
            message: "OtaProvider ts is not Ready".into(),
        };
        apply_outcome(&mut conditions, &waiting, Some(1), &now(10));
        let waiting_again = Outcome::Waiting {
            reason: "ProviderNotReady".into(),
            message: "OtaProvider ts is not Ready: AuthenticationFailed".into(),
        };
        apply_outcome(&mut conditions, &waiting_again, Some(1), &now(20));
        let ready = find_condition(&conditions, READY).unwrap();
        assert_eq!(ready.last_transition_time, now(10));
        assert!(ready.message.ends_with("AuthenticationFailed"));
    }
}
