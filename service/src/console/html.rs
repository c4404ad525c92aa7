//! HTML for the console: escaping of every value from outside, times in UTC with a relative
//! form, and the page's frame (one `h1`, the navigation, the log-out button).

use std::fmt::Write;
use std::time::SystemTime;

/// Text made safe for HTML content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A query-string component, percent-encoded.
pub(crate) fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// RFC 3339 in UTC.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// "3 min ago" (or "in 2 h").
pub(crate) fn relative(time: SystemTime, now: SystemTime) -> String {
    let (secs, past) = match now.duration_since(time) {
        Ok(d) => (d.as_secs(), true),
        Err(e) => (e.duration().as_secs(), false),
    };
    let amount = match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    };
    if past {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// A `<time>` showing UTC and its relative form, the exact time in `title`.
pub(crate) fn time(at: SystemTime, now: SystemTime) -> String {
    let exact = rfc3339(at);
    format!(
        "<time datetime=\"{exact}\" title=\"{exact}\">{} UTC · {}</time>",
        exact.trim_end_matches('Z').replace('T', " "),
        relative(at, now)
    )
}

/// Which page is shown (for the navigation's `aria-current`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Sessions,
    Delivery,
    None,
}

/// The whole page: frame, navigation and `body` (which holds the one `h1`).
pub(crate) fn page(title: &str, nav: Nav, logout_csrf: Option<&str>, body: &str) -> String {
    let link = |href: &str, name: &str, this: Nav| {
        let current = if nav == this {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<li><a href=\"{href}\"{current}>{name}</a></li>")
    };
    let logout = match logout_csrf {
        Some(csrf) => format!(
            "<form method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"secondary\">Log out</button></form>",
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · bankconnect</title><link rel=\"stylesheet\" href=\"/ui/assets/console.css\">\
         <script src=\"/ui/assets/console.js\" defer></script></head><body>\
         <header><span class=\"brand\">bankconnect</span><nav aria-label=\"Console\"><ul>{}{}{}</ul></nav>{logout}</header>\
         <main>{body}</main></body></html>",
        esc(title),
        link("/ui", "Overview", Nav::Overview),
        link("/ui/sessions", "Sessions", Nav::Sessions),
        link("/ui/delivery", "Delivery", Nav::Delivery),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_inert() {
        assert_eq!(
            esc("\"><script>alert(1)</script>"),
            "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(esc("a'b&c\u{1b}"), "a&#39;b&amp;c\\u{1b}");
        assert_eq!(url_part("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn times_read_in_utc_and_relative() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let before = now - std::time::Duration::from_secs(180);
        assert_eq!(relative(before, now), "3 min ago");
        assert!(time(before, now).contains("title=\"2027-01-15T07:57:00Z\""));
    }
}
