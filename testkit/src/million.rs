//! A million sessions written straight into the store's schema by SQL, for the benchmarks that
//! measure reading them (the operators' filters, the console's pages), not adding them.

/// One million sessions, as stored by the store's own schema: 10 % tracking, 5 % cancelled, the
/// rest finished with an outcome (one in twenty timed out, one in ten with an error code) and a
/// delivery (mostly delivered, some failing or given up). `{N}` is the engine's row generator.
pub fn seed_sql(generator: &str, id: &str, now_ms: i64) -> String {
    format!(
        "INSERT INTO sessions (session_id, reference, state, added_at_ms, updated_at_ms, outcome, outcome_kind, finished_at_ms) \
         SELECT {id}, 'loan-' || CAST(n AS TEXT), \
           CASE WHEN n % 10 = 0 THEN 'tracking' WHEN n % 20 = 1 THEN 'cancelled' ELSE 'finished' END, \
           {now_ms} - 2592000000 + CAST(n AS BIGINT) * 2592, {now_ms} - 2592000000 + CAST(n AS BIGINT) * 2592, \
           CASE WHEN n % 10 = 0 OR n % 20 = 1 THEN NULL ELSE '{{\"outcome\":\"completed\"}}' END, \
           CASE WHEN n % 10 = 0 OR n % 20 = 1 THEN NULL WHEN n % 20 = 3 THEN 'timed_out' WHEN n % 10 = 7 THEN 'completed_with_failures' ELSE 'completed' END, \
           CASE WHEN n % 10 = 0 OR n % 20 = 1 THEN NULL ELSE {now_ms} - 2592000000 + CAST(n AS BIGINT) * 2592 END \
         FROM {generator};
         INSERT INTO outbox (session_id, webhook_id, state, attempts, next_attempt_ms, created_at_ms, updated_at_ms, session_seq) \
         SELECT session_id, 'msg_' || session_id, \
           CASE WHEN seq % 50 = 3 THEN 'given_up' WHEN seq % 50 = 5 THEN 'failing' WHEN seq % 50 = 9 THEN 'pending' ELSE 'delivered' END, \
           1, NULL, finished_at_ms, finished_at_ms, seq FROM sessions WHERE state = 'finished';
         INSERT INTO session_error_codes (code, session_seq, at_ms) \
         SELECT 'INCOMPLETE_MONTHS', seq, finished_at_ms FROM sessions WHERE outcome_kind = 'completed_with_failures';"
    )
}
