//! Kubernetes conditions that keep their `lastTransitionTime` while their status holds.
//!
//! Every otaplane controller sets its conditions through [`set_condition`], so a reconcile that
//! changes nothing produces a byte-identical status and the controller can skip the write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The status of a condition, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell.
    Unknown,
}

impl ConditionStatus {
    /// `True` when `holds`, else `False`.
    pub fn from_bool(holds: bool) -> Self {
        if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }

    /// The wire spelling: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// The condition a controller wants, without the bookkeeping fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    /// Condition type, for example `Ready` (see [`crate::api::condition_types`]).
    pub type_: &'static str,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// One CamelCase word saying why, for example `PackageNotReady`.
    pub reason: String,
    /// A sentence for humans.
    pub message: String,
}

impl DesiredCondition {
    /// A condition of `type_` with the given status, reason and message.
    pub fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Sets `desired` in `conditions` and reports whether anything changed.
///
/// An existing condition of the same type is updated in place (the list order stays stable); a
/// new one is appended. `lastTransitionTime` becomes `now` only when the status changes (or the
/// condition is new); reason, message and `observedGeneration` are always brought up to date.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    desired: DesiredCondition,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = desired.status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(existing) => {
            let before = existing.clone();
            if existing.status != status {
                existing.status = status.to_owned();
                existing.last_transition_time = now.clone();
            }
            existing.reason = desired.reason;
            existing.message = desired.message;
            existing.observed_generation = observed_generation;
            *existing != before
        }
        None => {
            conditions.push(Condition {
                type_: desired.type_.to_owned(),
                status: status.to_owned(),
                reason: desired.reason,
                message: desired.message,
                observed_generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// Removes the condition of type `type_`, reporting whether it was there.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == ConditionStatus::True.as_str())
}

/// The reason of the condition of type `type_`, if present.
pub fn condition_reason<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::condition_types::{READY, STALLED};

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn ready(status: ConditionStatus, reason: &str) -> DesiredCondition {
        DesiredCondition::new(READY, status, reason, format!("because {reason}"))
    }

    #[test]
    fn a_new_condition_gets_the_current_time() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "Pending"),
            Some(1),
            &at(100)
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].reason, "Pending");
        assert_eq!(conditions[0].observed_generation, Some(1));
        assert_eq!(conditions[0].last_transition_time, at(100));
    }

    #[test]
    fn same_status_keeps_transition_time_but_updates_reason_and_generation() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "Pending"),
            Some(1),
            &at(100),
        );
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "Scheduled"),
            Some(2),
            &at(200)
        ));
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].reason, "Scheduled");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn a_status_change_moves_the_transition_time() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "Running"),
            Some(1),
            &at(100),
        );
        set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Succeeded"),
            Some(1),
            &at(300),
        );
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].last_transition_time, at(300));
    }

    #[test]
    fn setting_the_same_condition_again_reports_no_change() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Succeeded"),
            Some(3),
            &at(100),
        );
        let before = conditions.clone();
        assert!(!set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Succeeded"),
            Some(3),
            &at(999)
        ));
        assert_eq!(conditions, before);
    }

    #[test]
    fn conditions_keep_their_order_and_can_be_queried_and_removed() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "Pending"),
            None,
            &at(1),
        );
        set_condition(
            &mut conditions,
            DesiredCondition::new(
                STALLED,
                ConditionStatus::True,
                "VendorMismatch",
                "wrong vendor",
            ),
            None,
            &at(1),
        );
        set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Succeeded"),
            None,
            &at(2),
        );
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, STALLED]);
        assert!(is_condition_true(&conditions, READY));
        assert_eq!(
            condition_reason(&conditions, STALLED),
            Some("VendorMismatch")
        );
        assert!(remove_condition(&mut conditions, STALLED));
        assert!(!remove_condition(&mut conditions, STALLED));
        assert!(!is_condition_true(&conditions, STALLED));
    }
}
