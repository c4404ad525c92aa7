//! Times in queries and bodies: RFC 3339, in UTC (`Z`) or with an offset (`+05:30`).

use std::time::{Duration, SystemTime};

/// An RFC 3339 time, e.g. `2026-12-01T09:30:00Z` or `2026-12-01T15:00:00+05:30`.
pub(crate) fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-01T09:30:00Z)");
    if text.len() > 40 {
        return Err(bad());
    }
    // An offset is the last six characters: `+HH:MM` or `-HH:MM`.
    let (base, offset) = match text
        .len()
        .checked_sub(6)
        .and_then(|at| text.get(at..).map(|o| (at, o)))
    {
        Some((at, offset))
            if offset.starts_with(['+', '-'])
                && offset.as_bytes().get(3) == Some(&b':')
                && text.get(..at).is_some_and(|base| base.contains('T')) =>
        {
            let hours: u64 = offset
                .get(1..3)
                .and_then(|h| h.parse().ok())
                .ok_or_else(bad)?;
            let minutes: u64 = offset
                .get(4..6)
                .and_then(|m| m.parse().ok())
                .ok_or_else(bad)?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            let shift = Duration::from_secs(hours * 3600 + minutes * 60);
            (
                format!("{}Z", text.get(..at).unwrap_or_default()),
                Some((offset.starts_with('+'), shift)),
            )
        }
        _ => (text.to_owned(), None),
    };
    let time = humantime::parse_rfc3339(&base).map_err(|_| bad())?;
    Ok(match offset {
        // 15:00+05:30 is 09:30Z: an offset ahead of UTC is subtracted.
        Some((true, shift)) => time.checked_sub(shift).ok_or_else(bad)?,
        Some((false, shift)) => time.checked_add(shift).ok_or_else(bad)?,
        None => time,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn utc_and_offsets_name_the_same_instant() {
        let utc = parse_rfc3339("2026-12-01T09:30:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-12-01T15:00:00+05:30").unwrap(), utc);
        assert_eq!(parse_rfc3339("2026-12-01T04:30:00-05:00").unwrap(), utc);
        assert_eq!(
            parse_rfc3339("2026-12-01T09:30:00.250Z").unwrap(),
            utc + Duration::from_millis(250)
        );
        for bad in [
            "",
            "yesterday",
            "2026-12-01",
            "2026-12-01T09:30:00+25:00",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
