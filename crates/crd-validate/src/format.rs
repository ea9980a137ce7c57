//! String formats as the apiserver checks them (kube-openapi's strfmt
//! registry), and their parsing into CEL values.

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone as _};
use regex::Regex;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in format patterns compile")
}

static DATE: LazyLock<Regex> = LazyLock::new(|| regex(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$"));
static TIME_OF_DAY: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
});
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
});
static UUID3: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)^[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$"));
static UUID4: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
});
static UUID5: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
});
static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
    )
});
static MAC: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){7}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){19}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){3}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){9})$",
    )
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| regex(r"^[^@\s<>]+@[^@\s<>]+$"));
static OPENAPI_DURATION: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^\s*(?:(\d+)\s*([A-Za-zµ]+)\s*)+$"));
static OPENAPI_DURATION_PART: LazyLock<Regex> = LazyLock::new(|| regex(r"(\d+)\s*([A-Za-zµ]+)"));

/// Whether `value` is valid for `format`, as the apiserver checks it.
/// Formats the apiserver does not check (int32, int64, float, double,
/// password, and unknown names) always pass.
pub(crate) fn is_valid(format: &str, value: &str) -> bool {
    match format {
        "date-time" | "datetime" => is_date_time(value),
        "date" => parse_date(value).is_some(),
        "byte" => decode_base64(value).is_some(),
        "duration" => parse_go_duration(value).is_some(),
        "uuid" => UUID.is_match(value),
        "uuid3" => UUID3.is_match(value),
        "uuid4" => UUID4.is_match(value),
        "uuid5" => UUID5.is_match(value),
        "ipv4" => value.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => value.contains(':') && value.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(value),
        "mac" => MAC.is_match(value),
        "hostname" => value.len() <= 255 && HOSTNAME.is_match(value),
        "email" => EMAIL.is_match(value),
        _ => true,
    }
}

/// go-openapi's `IsDateTime`: a `YYYY-MM-DD` date, a `t`, and a time of day with
/// a `z` or numeric offset, compared case-insensitively.
fn is_date_time(value: &str) -> bool {
    if value.len() < 4 {
        return false;
    }
    let lowered = value.to_lowercase();
    let parts: Vec<&str> = lowered.split('t').collect();
    if parts.len() < 2 || parse_date(parts[0]).is_none() {
        return false;
    }
    let Some(captures) = TIME_OF_DAY.captures(parts[1]) else {
        return false;
    };
    &captures[1] <= "23" && &captures[2] <= "59" && &captures[3] <= "59"
}

fn is_cidr(value: &str) -> bool {
    let Some((address, prefix)) = value.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    if prefix.to_string().len() != value.len() - address.len() - 1 {
        return false;
    }
    if address.parse::<Ipv4Addr>().is_ok() {
        prefix <= 32
    } else if address.contains(':') && address.parse::<Ipv6Addr>().is_ok() {
        prefix <= 128
    } else {
        false
    }
}

/// A `date-time` as a CEL timestamp.
pub(crate) fn parse_date_time(value: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(&value.to_uppercase()).ok())
}

/// A `date` (`YYYY-MM-DD`) as a CEL timestamp at midnight UTC.
pub(crate) fn parse_date(value: &str) -> Option<DateTime<FixedOffset>> {
    let captures = DATE.captures(value)?;
    let date = NaiveDate::from_ymd_opt(
        captures[1].parse().ok()?,
        captures[2].parse().ok()?,
        captures[3].parse().ok()?,
    )?;
    let utc = FixedOffset::east_opt(0)?;
    Some(utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

/// A `byte` string (standard base64) decoded.
pub(crate) fn decode_base64(value: &str) -> Option<Vec<u8>> {
    let cleaned: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .ok()
}

/// A `duration`: Go's `time.ParseDuration` syntax (`1h30m`, `-1.5s`), or
/// go-openapi's (`3 days`, `2w`).
pub(crate) fn parse_go_duration(value: &str) -> Option<chrono::Duration> {
    parse_time_duration(value).or_else(|| parse_openapi_duration(value))
}

fn unit_nanos(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    })
}

fn parse_time_duration(value: &str) -> Option<chrono::Duration> {
    let (negative, mut rest) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." {
            return None;
        }
        let amount: f64 = number.parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        total += amount * unit_nanos(&rest[..unit_end])?;
        rest = &rest[unit_end..];
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total as i64;
    Some(chrono::Duration::nanoseconds(if negative {
        -nanos
    } else {
        nanos
    }))
}

fn parse_openapi_duration(value: &str) -> Option<chrono::Duration> {
    if !OPENAPI_DURATION.is_match(value) {
        return None;
    }
    let mut total = chrono::Duration::zero();
    for part in OPENAPI_DURATION_PART.captures_iter(value) {
        let amount: i64 = part[1].parse().ok()?;
        let unit_seconds: i64 = match &part[2] {
            "ns" | "us" | "µs" | "ms" => {
                let nanos = unit_nanos(&part[2])? as i64;
                total += chrono::Duration::nanoseconds(amount.checked_mul(nanos)?);
                continue;
            }
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "wk" | "wks" | "week" | "weeks" => 604_800,
            _ => return None,
        };
        total += chrono::Duration::try_seconds(amount.checked_mul(unit_seconds)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time_is_checked_like_go_openapi() {
        assert!(is_valid("date-time", "2024-05-01T10:00:00Z"));
        assert!(is_valid("date-time", "2024-05-01T10:00:00.123+02:00"));
        assert!(is_valid("date-time", "2024-05-01t10:00:00z"));
        assert!(!is_valid("date-time", "2024-05-01 10:00:00Z"));
        assert!(!is_valid("date-time", "2024-05-01T10:00:00"));
        assert!(!is_valid("date-time", "2024-02-30T10:00:00Z"));
        assert!(!is_valid("date-time", "2024-05-01T24:00:00Z"));
        assert!(!is_valid("date-time", "yesterday"));
    }

    #[test]
    fn other_formats() {
        assert!(is_valid("date", "2024-02-29"));
        assert!(!is_valid("date", "2023-02-29"));
        assert!(is_valid("byte", "aGVsbG8="));
        assert!(!is_valid("byte", "not base64!"));
        assert!(is_valid("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_valid("uuid", "123e4567"));
        assert!(is_valid("ipv4", "10.0.0.1"));
        assert!(!is_valid("ipv4", "10.0.0.256"));
        assert!(is_valid("cidr", "10.0.0.0/8"));
        assert!(!is_valid("cidr", "10.0.0.0/33"));
        assert!(is_valid("hostname", "example.com"));
        assert!(!is_valid("hostname", "-bad-.example.com"));
        assert!(is_valid("int32", "anything"));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_go_duration("1h30m"),
            Some(chrono::Duration::minutes(90))
        );
        assert_eq!(
            parse_go_duration("-1.5s"),
            Some(chrono::Duration::milliseconds(-1500))
        );
        assert_eq!(parse_go_duration("2 days"), Some(chrono::Duration::days(2)));
        assert_eq!(parse_go_duration("soon"), None);
    }
}
