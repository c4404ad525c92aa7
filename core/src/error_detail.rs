//! Structure extracted from account error messages: the months of INCOMPLETE_MONTHS and
//! INCOMPLETE_MONTHS_UPLOAD, and the month → days map of INCOMPLETE_DATES_UPLOAD.
//!
//! FinBox puts this only in prose ("…There are no transactions for Nov 2023, Dec 2023"). Extraction
//! is best-effort and never fails: a message that does not match gives no detail, and the message
//! itself is always kept by the caller.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error_codes::AccountErrorCode;

/// Most months or days extracted from one message; more are ignored (bounds hostile input).
pub(crate) const MAX_DETAIL_ITEMS: usize = 600;

/// A calendar month, written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    year: u16,
    month: u8,
}

impl YearMonth {
    /// A month, if `month` is 1–12 and `year` is 1000–9999.
    pub fn new(year: u16, month: u8) -> Option<Self> {
        ((1..=12).contains(&month) && (1000..=9999).contains(&year)).then_some(Self { year, month })
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// Parses `YYYY-MM`.
    pub fn parse_iso(text: &str) -> Option<Self> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        if !year
            .bytes()
            .chain(month.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Self::new(year.parse().ok()?, month.parse().ok()?)
    }

    /// Parses FinBox's `Mon YYYY` (`Nov 2023`; full month names are accepted too).
    pub fn parse_finbox(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let month = month_number(words.next()?)?;
        let year = words.next()?;
        if words.next().is_some() {
            return None;
        }
        Self::new(parse_year(year)?, month)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for YearMonth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for YearMonth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_iso(&text)
            .ok_or_else(|| serde::de::Error::custom("expected a month as YYYY-MM"))
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const FULL_MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn month_number(word: &str) -> Option<u8> {
    // Most words are not months: reject on length and first letter before any comparison.
    let first = word.as_bytes().first()?.to_ascii_lowercase();
    if !(3..=9).contains(&word.len()) || !b"jfmasond".contains(&first) {
        return None;
    }
    let index = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(word))
        .or_else(|| {
            FULL_MONTHS
                .iter()
                .position(|m| m.eq_ignore_ascii_case(word))
        })
        .or_else(|| "sept".eq_ignore_ascii_case(word).then_some(8))?;
    u8::try_from(index + 1).ok()
}

fn parse_year(word: &str) -> Option<u16> {
    (word.len() == 4 && word.bytes().all(|b| b.is_ascii_digit()))
        .then(|| word.parse().ok())
        .flatten()
}

/// Structured detail of an account error, extracted from its message.
///
/// Serializes as `{"months": ["2023-11", …]}` or `{"dates": {"2024-01": [1, 2, 3, 4]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ErrorDetail {
    /// Months named by INCOMPLETE_MONTHS or INCOMPLETE_MONTHS_UPLOAD, in message order, unique.
    Months(Vec<YearMonth>),
    /// Missing days per month named by INCOMPLETE_DATES_UPLOAD, days sorted and unique.
    Dates(BTreeMap<YearMonth, Vec<u8>>),
}

impl ErrorDetail {
    /// Extracts the detail the code's message carries, if the code has any and the message matches.
    pub fn extract(code: &AccountErrorCode, message: &str) -> Option<Self> {
        match code {
            AccountErrorCode::IncompleteMonths | AccountErrorCode::IncompleteMonthsUpload => {
                let months = months_in(message);
                (!months.is_empty()).then_some(Self::Months(months))
            }
            AccountErrorCode::IncompleteDatesUpload => {
                let dates = dates_in(message);
                (!dates.is_empty()).then_some(Self::Dates(dates))
            }
            _ => None,
        }
    }
}

/// Every `Mon YYYY` in the text, in order, without repeats. Allocation-free until a month is found.
fn months_in(text: &str) -> Vec<YearMonth> {
    let mut months = Vec::new();
    let mut previous_month: Option<u8> = None;
    for word in text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_DETAIL_ITEMS * 4)
    {
        if let Some(found) = previous_month
            .zip(parse_year(word))
            .and_then(|(m, y)| YearMonth::new(y, m))
        {
            if !months.contains(&found) && months.len() < MAX_DETAIL_ITEMS {
                months.push(found);
            }
        }
        previous_month = if word.len() <= 9 {
            month_number(word)
        } else {
            None
        };
    }
    months
}

/// Every `"Mon YYYY": [d, d, …]` in the text (double or single quotes, or none).
fn dates_in(text: &str) -> BTreeMap<YearMonth, Vec<u8>> {
    let mut dates: BTreeMap<YearMonth, Vec<u8>> = BTreeMap::new();
    let mut items = 0usize;
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let (before, after) = rest.split_at(open);
        let Some(close) = after.find(']') else { break };
        let (list, tail) = after.split_at(close);
        rest = tail;
        // The key is the last `Mon YYYY` before the bracket, after the previous list.
        let key_text = before.rsplit([',', '{', ']']).next().unwrap_or(before);
        let Some(month) = months_in(key_text).pop() else {
            continue;
        };
        let days = dates.entry(month).or_default();
        for day in list.trim_start_matches('[').split(',') {
            if items >= MAX_DETAIL_ITEMS {
                break;
            }
            if let Ok(day) = day.trim().parse::<u8>() {
                if (1..=31).contains(&day) {
                    days.push(day);
                    items += 1;
                }
            }
        }
    }
    dates.retain(|_, days| {
        days.sort_unstable();
        days.dedup();
        !days.is_empty()
    });
    dates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ym(y: u16, m: u8) -> YearMonth {
        YearMonth::new(y, m).unwrap()
    }

    #[test]
    fn incomplete_months() {
        let detail = ErrorDetail::extract(
            &AccountErrorCode::IncompleteMonths,
            "Insufficient data to generate report. There are no transactions for Nov 2023, Dec 2023",
        );
        assert_eq!(
            detail,
            Some(ErrorDetail::Months(vec![ym(2023, 11), ym(2023, 12)]))
        );
        assert_eq!(
            serde_json::to_string(&detail).unwrap(),
            r#"{"months":["2023-11","2023-12"]}"#
        );
    }

    #[test]
    fn incomplete_months_upload_and_variants() {
        let detail = ErrorDetail::extract(
            &AccountErrorCode::IncompleteMonthsUpload,
            "Statement(s) uploaded contain incomplete months. Missing data present for Nov 2023, Dec 2023, Jan 2024",
        );
        assert_eq!(
            detail,
            Some(ErrorDetail::Months(vec![
                ym(2023, 11),
                ym(2023, 12),
                ym(2024, 1)
            ]))
        );
        let detail = ErrorDetail::extract(
            &AccountErrorCode::IncompleteMonths,
            "no transactions for September 2023 and sept 2024",
        );
        assert_eq!(
            detail,
            Some(ErrorDetail::Months(vec![ym(2023, 9), ym(2024, 9)]))
        );
    }

    #[test]
    fn incomplete_dates() {
        let detail = ErrorDetail::extract(
            &AccountErrorCode::IncompleteDatesUpload,
            r#"Statement(s) uploaded contain incomplete dates. Missing dates present for {"Jan 2024": [1, 2, 3, 4]}"#,
        );
        let expected: BTreeMap<_, _> = [(ym(2024, 1), vec![1, 2, 3, 4])].into();
        assert_eq!(detail, Some(ErrorDetail::Dates(expected)));
        assert_eq!(
            serde_json::to_string(&detail).unwrap(),
            r#"{"dates":{"2024-01":[1,2,3,4]}}"#
        );
        let detail = ErrorDetail::extract(
            &AccountErrorCode::IncompleteDatesUpload,
            "Missing dates present for {'Jan 2024': [4, 1], 'Feb 2024': [29, 40]}",
        );
        let expected: BTreeMap<_, _> = [(ym(2024, 1), vec![1, 4]), (ym(2024, 2), vec![29])].into();
        assert_eq!(detail, Some(ErrorDetail::Dates(expected)));
    }

    #[test]
    fn unmatched_messages_give_no_detail() {
        for (code, message) in [
            (AccountErrorCode::IncompleteMonths, "no months here"),
            (AccountErrorCode::IncompleteMonths, ""),
            (AccountErrorCode::IncompleteMonths, "for Nov 23"),
            (
                AccountErrorCode::IncompleteDatesUpload,
                "{\"Jan 2024\": []}",
            ),
            (AccountErrorCode::IncompleteDatesUpload, "[[[[[[[["),
            (AccountErrorCode::MissingTransactions, "Nov 2023"),
            (AccountErrorCode::Other("X".into()), "Nov 2023"),
        ] {
            assert_eq!(ErrorDetail::extract(&code, message), None, "{message}");
        }
    }

    #[test]
    fn year_month_text_forms() {
        assert_eq!(YearMonth::parse_iso("2023-11"), Some(ym(2023, 11)));
        assert_eq!(YearMonth::parse_iso("2023-13"), None);
        assert_eq!(YearMonth::parse_iso("+023-11"), None);
        assert_eq!(YearMonth::parse_finbox("Nov 2023"), Some(ym(2023, 11)));
        assert_eq!(YearMonth::parse_finbox("Foo 2023"), None);
    }
}
