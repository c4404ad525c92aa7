//! Cheap structural limits checked before any JSON parser sees untrusted bytes.
//!
//! serde_json's own recursion limit (128) prevents stack overflow; this guard enforces the
//! project's lower documented limit (64), counted over the whole document, unknown fields included.

/// Default maximum nesting depth of objects and arrays in bodies read from outside.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Returns the deepest nesting of `{`/`[` in a JSON text, stopping early once `limit` is passed.
///
/// Brackets inside strings (escapes included) are not counted. The scan is linear and allocation-free
/// (string contents, most of a body, are skipped with `memchr`); it does not validate the JSON (the
/// parser does that afterwards).
pub(crate) fn nesting_depth(bytes: &[u8], limit: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut rest = bytes;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'"' => rest = after_string(rest),
            b'{' | b'[' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > limit {
                        return deepest;
                    }
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// What follows the string whose opening quote came just before `text` (nothing if it never
/// closes).
fn after_string(mut text: &[u8]) -> &[u8] {
    while let Some(at) = memchr::memchr2(b'"', b'\\', text) {
        match text.get(at) {
            // An escape: skip it and the byte it escapes.
            Some(b'\\') => text = text.get(at + 2..).unwrap_or_default(),
            _ => return text.get(at + 1..).unwrap_or_default(),
        }
    }
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings() {
        assert_eq!(nesting_depth(br#"{"a": [1, {"b": "[[[[{{"}]}"#, 64), 3);
        assert_eq!(nesting_depth(br#"{"a": "\"[[["}"#, 64), 1);
        assert_eq!(nesting_depth(b"1", 64), 0);
        let deep = "[".repeat(200);
        assert_eq!(nesting_depth(deep.as_bytes(), 64), 65);
    }

    /// The reference: strip the strings first, then count what is left (another route to the
    /// same answer than the scan under test).
    fn reference(bytes: &[u8], limit: usize) -> usize {
        let mut structural = Vec::new();
        let (mut in_string, mut escaped) = (false, false);
        for &byte in bytes {
            match (in_string, escaped, byte) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (true, false, b'"') => in_string = false,
                (true, false, _) => {}
                (false, _, b'"') => in_string = true,
                (false, _, other) => structural.push(other),
            }
        }
        let (mut depth, mut deepest) = (0usize, 0usize);
        for byte in structural {
            if byte == b'{' || byte == b'[' {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    break;
                }
            } else if byte == b'}' || byte == b']' {
                depth = depth.saturating_sub(1);
            }
        }
        deepest
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_byte_at_a_time_scan(
            text in proptest::collection::vec(
                proptest::sample::select(b"{}[]\"\\ a:,".to_vec()),
                0..200,
            ),
            limit in 0usize..8,
        ) {
            proptest::prop_assert_eq!(nesting_depth(&text, limit), reference(&text, limit));
        }
    }
}
