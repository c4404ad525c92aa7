//! Durations, sizes and paths as people type them (flags and the API's `max_wait`): `250ms`,
//! `2s`, `5m`, `1h`; `1MiB`, `65536`; `/webhooks/bankconnect`.

use std::time::Duration;

/// Longest duration accepted anywhere (timeouts, max waits): ten years.
const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// Parses a duration as people type it: `250ms`, `90s`, `5m`, `1h30m`, `1h 30m`, `2days` (via
/// humantime), or one decimal number with a unit (`1.5m`, `0.5s`); the error says what is
/// accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let shown: String = text.chars().take(40).collect();
    let help = || {
        format!(
            "invalid duration {shown:?}: use a number with a unit, e.g. 250ms, 90s, 1.5m, 1h30m"
        )
    };
    if text.is_empty() || text.len() > 64 {
        return Err(help());
    }
    let duration = match humantime::parse_duration(text) {
        Ok(duration) => duration,
        Err(_) => decimal(text).ok_or_else(help)?,
    };
    if duration > MAX_DURATION {
        return Err(format!("invalid duration {shown:?}: longer than ten years"));
    }
    Ok(duration)
}

/// `1.5m`, `0.25s`: one decimal number and one unit of ms, s, m or h.
fn decimal(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') || number.len() > 20 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => value / 1_000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3_600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Parses a duration that must be more than zero (timeouts, intervals).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!(
            "{:?} is zero: it must be more than zero (e.g. 250ms, 30s)",
            text.trim()
        ));
    }
    Ok(duration)
}

/// Parses a duration the store keeps in milliseconds: at least 1 ms (`500us` would be stored
/// as zero, so it is refused rather than rounded).
pub fn parse_millis_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < Duration::from_millis(1) {
        return Err(format!(
            "{:?} is below 1ms: durations here are kept in milliseconds (e.g. 250ms, 30s)",
            text.trim().chars().take(40).collect::<String>()
        ));
    }
    Ok(duration)
}

/// Parses an HTTP path a receiver listens on: it starts with `/` and has no query, fragment,
/// spaces or control characters.
pub fn parse_http_path(text: &str) -> Result<String, String> {
    let shown: String = text.chars().take(64).collect();
    if !text.starts_with('/') {
        return Err(format!(
            "invalid path {shown:?}: it must start with / (e.g. /webhooks/bankconnect)"
        ));
    }
    if text.contains(['?', '#']) {
        return Err(format!(
            "invalid path {shown:?}: no query (?) or fragment (#)"
        ));
    }
    if text.len() > 1024 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid path {shown:?}: no spaces or control characters, at most 1024 bytes"
        ));
    }
    if text.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(format!("invalid path {shown:?}: not a valid URL path"));
    }
    Ok(text.to_owned())
}

/// Parses a size: `1MiB`, `512KiB`, `1048576` (bytes), `2MB`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let help = || format!("invalid size {text:?}: use bytes or KiB/MiB (e.g. 1MiB, 65536)");
    let value: usize = number.parse().map_err(|_| help())?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1024,
        "KB" | "kB" => 1000,
        "MiB" | "M" => 1024 * 1024,
        "MB" => 1_000_000,
        _ => return Err(help()),
    };
    value
        .checked_mul(factor)
        .filter(|v| *v > 0)
        .ok_or_else(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2days"), Ok(Duration::from_secs(2 * 86400)));
        for bad in [
            "",
            "2",
            "s",
            "2x",
            "-1s",
            ".5s",
            "1.s",
            "1.5.5s",
            "1.5x",
            "99999999999999h",
            "11years",
            "NaNs",
            "infs",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn millisecond_durations_refuse_what_would_be_stored_as_zero() {
        assert_eq!(parse_millis_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_millis_duration("30m"), Ok(Duration::from_secs(1800)));
        for bad in ["0s", "500us", "0.9ms", "1ns", "999999ns"] {
            assert!(parse_millis_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1GiB").is_err());
    }
}
