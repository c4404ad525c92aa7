//! `Retry-After` header values: delta-seconds, or an HTTP date read against the response's own
//! `Date` header (so no local clock is needed).

use std::time::Duration;

/// Reads a `Retry-After` value. An HTTP date needs the response's `Date` to become a delay;
/// without it (or if either fails to parse) the value is ignored. Dates in the past give zero.
pub fn parse_retry_after(value: &str, response_date: Option<&str>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate instead of failing: a huge value is capped later by the policy.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    let now = parse_http_date(response_date?)?;
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Parses an HTTP date to seconds since the Unix epoch, with the `httpdate` crate: the
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete forms HTTP recipients must
/// also accept (RFC 850 and asctime).
pub(crate) fn parse_http_date(text: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(text.trim()).ok()?;
    at.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_seconds() {
        assert_eq!(parse_retry_after("7", None), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", None), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", None),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("-1", None), None);
        assert_eq!(parse_retry_after("1.5", None), None);
        assert_eq!(parse_retry_after("", None), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        // The obsolete forms HTTP requires recipients to accept.
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("garbage"), None);
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 1994 08:50:07 GMT",
                Some("Sun, 06 Nov 1994 08:49:37 GMT")
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", None),
            None
        );
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 1994 08:00:00 GMT",
                Some("Sun, 06 Nov 1994 08:49:37 GMT")
            ),
            Some(Duration::ZERO)
        );
    }
}
