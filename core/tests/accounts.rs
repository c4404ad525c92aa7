//! Account results on the documented webhook account shapes, every account error code included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bankconnect_core::{AccountErrorCode, AccountResult, AccountStatus, ErrorDetail, YearMonth};

fn accounts_of(fixture: &[u8]) -> Vec<AccountResult> {
    #[derive(serde::Deserialize)]
    struct Event {
        accounts: Vec<AccountResult>,
    }
    serde_json::from_slice::<Event>(fixture).unwrap().accounts
}

#[test]
fn fixtures() {
    let completed = accounts_of(include_bytes!("fixtures/webhook_enrichment_completed.json"));
    assert_eq!(completed[0].account_status, Some(AccountStatus::Completed));
    assert_eq!(completed[0].error_code, None);
    assert!(!completed[0].is_failed());

    let newer = accounts_of(include_bytes!(
        "fixtures/webhook_enrichment_newer_completed.json"
    ));
    assert_eq!(newer[0].error_code, None, "\"\" reads as none");
    assert_eq!(newer[0].error_message, None);
    assert_eq!(newer[0].bank_name.as_deref(), Some("hdfc"));

    let failed = accounts_of(include_bytes!("fixtures/webhook_enrichment_failed.json"));
    assert_eq!(
        failed[0].error_code,
        Some(AccountErrorCode::MissingTransactions)
    );
    assert_eq!(failed[0].error_detail, None);
    assert!(failed[0].is_failed());

    let months = accounts_of(include_bytes!(
        "fixtures/webhook_enrichment_incomplete_months.json"
    ));
    assert_eq!(
        months[0].error_detail,
        Some(ErrorDetail::Months(vec![
            YearMonth::new(2023, 11).unwrap(),
            YearMonth::new(2023, 12).unwrap()
        ]))
    );
    let json = serde_json::to_value(&months[0]).unwrap();
    assert_eq!(
        json["error_detail"],
        serde_json::json!({"months": ["2023-11", "2023-12"]})
    );
    assert!(json.get("account_number").is_none());

    let dates = accounts_of(include_bytes!(
        "fixtures/webhook_enrichment_incomplete_dates.json"
    ));
    let json = serde_json::to_value(&dates[0]).unwrap();
    assert_eq!(
        json["error_detail"],
        serde_json::json!({"dates": {"2024-01": [1, 2, 3, 4]}})
    );

    let upload = accounts_of(include_bytes!("fixtures/webhook_upload_completed.json"));
    assert_eq!(upload[0].account_status, Some(AccountStatus::Partial));
    assert_eq!(upload[0].account_number.as_deref(), Some("XXXXXXXX1234"));
}

#[test]
fn every_account_error_code_with_null_empty_and_real_messages() {
    let messages = [
        ("MISSING_TRANSACTIONS", "One or more transactions are missing in the specified date range", None),
        ("INCOMPLETE_MONTHS", "Insufficient data to generate report. There are no transactions for Nov 2023, Dec 2023", Some(r#"{"months":["2023-11","2023-12"]}"#)),
        ("NULL_ACCOUNT_NUMBER", "Account number is either unavailable or could not be identified", None),
        ("BALANCE_MISMATCH", "Calculated balance does not match", None),
        ("INCOMPLETE_MONTHS_UPLOAD", "Statement(s) uploaded contain incomplete months. Missing data present for Nov 2023, Dec 2023", Some(r#"{"months":["2023-11","2023-12"]}"#)),
        ("INCOMPLETE_DATES_UPLOAD", r#"Statement(s) uploaded contain incomplete dates. Missing dates present for {"Jan 2024": [1, 2, 3, 4]}"#, Some(r#"{"dates":{"2024-01":[1,2,3,4]}}"#)),
        ("UNPARSABLE", "The statement could not be parsed", None),
        ("BRAND_NEW_CODE", "Something new", None),
    ];
    for (code, message, detail) in messages {
        let body = serde_json::json!({"account_id": "a", "bank_name": "sbi", "account_status": "failed",
                                      "error_code": code, "error_message": message});
        let account: AccountResult = serde_json::from_value(body).unwrap();
        assert_eq!(account.error_code.as_ref().unwrap().as_str(), code);
        assert_eq!(
            account.error_code.as_ref().unwrap().is_other(),
            code == "BRAND_NEW_CODE"
        );
        assert_eq!(account.error_message.as_deref(), Some(message));
        assert_eq!(
            account
                .error_detail
                .as_ref()
                .map(|d| serde_json::to_string(d).unwrap())
                .as_deref(),
            detail,
            "{code}"
        );
        // A message that does not match keeps its text and gives no detail.
        let odd = serde_json::json!({"account_status": "failed", "error_code": code, "error_message": "garbled ]["});
        let account: AccountResult = serde_json::from_value(odd).unwrap();
        assert_eq!(account.error_detail, None);
        assert_eq!(account.error_message.as_deref(), Some("garbled ]["));
        // Empty and null codes and messages read as none.
        for blank in [serde_json::json!(""), serde_json::Value::Null] {
            let body = serde_json::json!({"account_status": "completed", "error_code": blank, "error_message": blank});
            let account: AccountResult = serde_json::from_value(body).unwrap();
            assert_eq!(
                (
                    account.error_code,
                    account.error_message,
                    account.error_detail
                ),
                (None, None, None)
            );
        }
    }
}
