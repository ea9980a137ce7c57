//! Deterministic wave planning: which devices go in which wave, what each vendor rollout is
//! called, and how many failures a wave tolerates.
//!
//! The plan depends only on the device list (in the order given) and `strategy.waves`, so a
//! restarted operator computes the same waves.

use std::ops::Range;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::SpecError;
use crate::api::{DEFAULT_MAX_FAILURES, MAX_DEVICES, MAX_WAVES, Strategy, Waves};

/// Splits `device_count` devices into waves, returned as index ranges into `spec.devices`.
///
/// The ranges are in order, never empty, and together cover `0..device_count` exactly once.
/// - `waves` unset: one wave with every device.
/// - `percentages`: wave `k` ends at `ceil(device_count * p_k / 100)` devices. A wave that
///   would hold no device (for example 1% and then 10% of 7 devices both end at device 1) is
///   dropped, and the remaining waves are numbered from 0 without gaps.
/// - `size`: waves of `size` devices, the last one taking what is left.
pub fn plan_waves(
    device_count: usize,
    waves: Option<&Waves>,
) -> Result<Vec<Range<usize>>, SpecError> {
    if device_count == 0 {
        return Err(SpecError::Devices(
            "the campaign lists no devices".to_owned(),
        ));
    }
    if device_count > MAX_DEVICES {
        return Err(SpecError::Devices(format!(
            "the campaign lists {device_count} devices; at most {MAX_DEVICES} are allowed"
        )));
    }
    let Some(waves) = waves else {
        return Ok(std::iter::once(0..device_count).collect());
    };
    match (&waves.percentages, waves.size) {
        (Some(percentages), None) => plan_by_percentages(device_count, percentages),
        (None, Some(size)) => plan_by_size(device_count, size),
        _ => Err(SpecError::Waves(
            "set exactly one of percentages and size".to_owned(),
        )),
    }
}

fn plan_by_percentages(
    device_count: usize,
    percentages: &[i32],
) -> Result<Vec<Range<usize>>, SpecError> {
    if percentages.is_empty() || percentages.len() > MAX_WAVES {
        return Err(SpecError::Waves(format!(
            "give between 1 and {MAX_WAVES} percentages"
        )));
    }
    let mut previous = 0;
    for &percentage in percentages {
        if !(1..=100).contains(&percentage) {
            return Err(SpecError::Waves(format!(
                "{percentage} is not a percentage between 1 and 100"
            )));
        }
        if percentage <= previous {
            return Err(SpecError::Waves(
                "percentages must be strictly increasing".to_owned(),
            ));
        }
        previous = percentage;
    }
    if previous != 100 {
        return Err(SpecError::Waves(
            "the last percentage must be 100".to_owned(),
        ));
    }
    let mut plan = Vec::with_capacity(percentages.len());
    let mut start = 0;
    for &percentage in percentages {
        let percentage = percentage as usize;
        let end = (device_count * percentage).div_ceil(100);
        if end > start {
            plan.push(start..end);
            start = end;
        }
    }
    Ok(plan)
}

fn plan_by_size(device_count: usize, size: i32) -> Result<Vec<Range<usize>>, SpecError> {
    let size = usize::try_from(size)
        .ok()
        .filter(|size| *size >= 1)
        .ok_or_else(|| SpecError::Waves(format!("size {size} must be at least 1")))?;
    let wave_count = device_count.div_ceil(size);
    if wave_count > MAX_WAVES {
        return Err(SpecError::Waves(format!(
            "size {size} makes {wave_count} waves of {device_count} devices; at most {MAX_WAVES} are allowed"
        )));
    }
    Ok((0..wave_count)
        .map(|wave| wave * size..((wave + 1) * size).min(device_count))
        .collect())
}

/// The deterministic vendor rollout name of wave `index` of the campaign with UID `campaign_uid`:
/// `otaplane-<first 12 letters or digits of the UID, lowercased>-w<index>`.
///
/// It uses only lowercase letters, digits and `-`, and is at most 64 characters, so every vendor
/// accepts it (the IoTDA client maps `-` to `_`). The operator looks a wave up by this name before
/// creating it, so a restart never starts a wave twice.
pub fn wave_name(campaign_uid: &str, index: usize) -> String {
    let uid: String = campaign_uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    format!("otaplane-{uid}-w{index}")
}

/// How many failures a wave tolerates: `strategy.maxFailures` parsed once, applied per wave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureThreshold {
    /// A fixed number of failed devices.
    Count(u64),
    /// A percentage (0 to 100) of the wave's devices.
    Percent(u64),
}

impl FailureThreshold {
    /// Parses `maxFailures`; unset means [`DEFAULT_MAX_FAILURES`] (`10%`).
    ///
    /// A count is an integer (`5`); a percentage is a string like `10%`. A string without `%`
    /// is rejected, as Kubernetes does for IntOrString percentages.
    pub fn parse(max_failures: Option<&IntOrString>) -> Result<Self, SpecError> {
        match max_failures {
            None => Self::parse_percent(DEFAULT_MAX_FAILURES),
            Some(IntOrString::Int(count)) => u64::try_from(*count)
                .map(FailureThreshold::Count)
                .map_err(|_| SpecError::MaxFailures(format!("{count} is negative"))),
            Some(IntOrString::String(text)) => Self::parse_percent(text),
        }
    }

    fn parse_percent(text: &str) -> Result<Self, SpecError> {
        text.strip_suffix('%')
            .and_then(|digits| digits.parse::<u64>().ok())
            .filter(|percent| *percent <= 100)
            .map(FailureThreshold::Percent)
            .ok_or_else(|| {
                SpecError::MaxFailures(format!(
                    "{text:?} is neither a count like 5 nor a percentage like 10%"
                ))
            })
    }

    /// Failures tolerated in a wave of `wave_size` devices. A percentage is rounded DOWN, which
    /// is the conservative choice: `10%` of a 5-device wave tolerates no failure at all.
    pub fn for_wave(self, wave_size: usize) -> u64 {
        match self {
            FailureThreshold::Count(count) => count,
            FailureThreshold::Percent(percent) => wave_size as u64 * percent / 100,
        }
    }
}

/// Failures tolerated in a wave of `wave_size` devices under `strategy` (see
/// [`FailureThreshold::for_wave`]); a wave whose failures exceed it applies `onFailure`.
pub fn max_failures(strategy: Option<&Strategy>, wave_size: usize) -> Result<u64, SpecError> {
    let threshold = FailureThreshold::parse(strategy.and_then(|s| s.max_failures.as_ref()))?;
    Ok(threshold.for_wave(wave_size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::{Just, Strategy as _};
    use proptest::{prop_assert, prop_assert_eq, prop_oneof, proptest};

    fn percentages(values: &[i32]) -> Waves {
        Waves {
            percentages: Some(values.to_vec()),
            size: None,
        }
    }

    fn size(value: i32) -> Waves {
        Waves {
            percentages: None,
            size: Some(value),
        }
    }

    #[test]
    fn no_wave_strategy_means_one_wave_with_every_device() {
        assert_eq!(plan_waves(42, None).unwrap(), vec![0..42]);
    }

    #[test]
    fn percentages_1_10_50_100_over_7_devices_drop_the_empty_wave() {
        // ceil(0.07) = 1, ceil(0.7) = 1 (empty, dropped), ceil(3.5) = 4, 7.
        let plan = plan_waves(7, Some(&percentages(&[1, 10, 50, 100]))).unwrap();
        assert_eq!(plan, vec![0..1, 1..4, 4..7]);
    }

    #[test]
    fn percentages_over_1000_devices_end_where_the_user_expects() {
        let plan = plan_waves(1000, Some(&percentages(&[1, 10, 50, 100]))).unwrap();
        assert_eq!(plan, vec![0..10, 10..100, 100..500, 500..1000]);
    }

    #[test]
    fn three_equal_thirds_round_up() {
        let plan = plan_waves(10, Some(&percentages(&[33, 66, 100]))).unwrap();
        assert_eq!(plan, vec![0..4, 4..7, 7..10]);
    }

    #[test]
    fn fixed_size_waves_leave_the_rest_to_the_last_wave() {
        assert_eq!(
            plan_waves(10, Some(&size(4))).unwrap(),
            vec![0..4, 4..8, 8..10]
        );
        assert_eq!(plan_waves(3, Some(&size(10))).unwrap(), vec![0..3]);
    }

    #[test]
    fn too_many_waves_or_bad_percentages_are_spec_errors() {
        assert!(matches!(
            plan_waves(1000, Some(&size(9))),
            Err(SpecError::Waves(_))
        ));
        assert!(plan_waves(1000, Some(&size(10))).is_ok());
        for bad in [
            &[10, 50][..],
            &[50, 10, 100],
            &[0, 100],
            &[10, 10, 100],
            &[],
        ] {
            assert!(
                matches!(
                    plan_waves(10, Some(&percentages(bad))),
                    Err(SpecError::Waves(_))
                ),
                "{bad:?} should be rejected"
            );
        }
        assert!(matches!(
            plan_waves(10, Some(&size(0))),
            Err(SpecError::Waves(_))
        ));
        let both = Waves {
            percentages: Some(vec![100]),
            size: Some(3),
        };
        assert!(matches!(
            plan_waves(10, Some(&both)),
            Err(SpecError::Waves(_))
        ));
        assert!(matches!(
            plan_waves(10, Some(&Waves::default())),
            Err(SpecError::Waves(_))
        ));
        assert!(matches!(plan_waves(0, None), Err(SpecError::Devices(_))));
    }

    #[test]
    fn wave_names_are_stable_short_and_vendor_safe() {
        let uid = "3F2504E0-4F89-11D3-9A0C-0305E82C3301";
        assert_eq!(wave_name(uid, 0), "otaplane-3f2504e04f89-w0");
        assert_eq!(wave_name(uid, 0), wave_name(uid, 0));
        assert_ne!(wave_name(uid, 0), wave_name(uid, 1));
        let longest = wave_name(uid, MAX_WAVES - 1);
        assert!(longest.len() <= 64);
        assert!(
            longest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn max_failures_defaults_to_ten_percent_rounded_down() {
        assert_eq!(max_failures(None, 100).unwrap(), 10);
        assert_eq!(max_failures(None, 19).unwrap(), 1);
        assert_eq!(max_failures(None, 5).unwrap(), 0);
    }

    #[test]
    fn max_failures_accepts_counts_and_percentages() {
        let with = |value: IntOrString| Strategy {
            max_failures: Some(value),
            ..Strategy::default()
        };
        assert_eq!(
            max_failures(Some(&with(IntOrString::Int(3))), 1000).unwrap(),
            3
        );
        assert_eq!(
            max_failures(Some(&with(IntOrString::String("25%".into()))), 10).unwrap(),
            2
        );
        assert_eq!(
            max_failures(Some(&with(IntOrString::String("100%".into()))), 10).unwrap(),
            10
        );
        for bad in [
            IntOrString::Int(-1),
            IntOrString::String("5".into()),
            IntOrString::String("101%".into()),
            IntOrString::String("ten%".into()),
        ] {
            assert!(matches!(
                max_failures(Some(&with(bad)), 10),
                Err(SpecError::MaxFailures(_))
            ));
        }
    }

    fn any_waves() -> impl proptest::strategy::Strategy<Value = Option<Waves>> {
        prop_oneof![
            Just(None),
            (1i32..200).prop_map(|s| Some(size(s))),
            proptest::collection::btree_set(1i32..100, 0..12).prop_map(|set| {
                let mut values: Vec<i32> = set.into_iter().collect();
                values.push(100);
                Some(percentages(&values))
            }),
        ]
    }

    proptest! {
        #[test]
        fn waves_partition_the_device_list_in_order(count in 1usize..5000, waves in any_waves()) {
            match plan_waves(count, waves.as_ref()) {
                Ok(plan) => {
                    prop_assert!(!plan.is_empty());
                    prop_assert!(plan.len() <= MAX_WAVES);
                    let mut next = 0;
                    for wave in &plan {
                        prop_assert_eq!(wave.start, next);
                        prop_assert!(wave.end > wave.start);
                        next = wave.end;
                    }
                    prop_assert_eq!(next, count);
                }
                Err(error) => {
                    // Only a size too small for 100 waves may be refused.
                    let too_many_waves = matches!(&waves, Some(Waves { size: Some(s), .. })
                        if count.div_ceil(*s as usize) > MAX_WAVES);
                    prop_assert!(too_many_waves, "unexpected error {error}");
                }
            }
        }
    }
}
