//! Cheap structural limits checked before any JSON parser sees untrusted bytes.
//!
//! serde_json's own recursion limit (128) prevents stack overflow; this guard enforces the
//! project's lower documented limit (64), counted over the whole document, unknown fields included.

/// Default maximum nesting depth of objects and arrays in bodies read from outside.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Returns the deepest nesting of `{`/`[` in a JSON text, stopping early once `limit` is passed.
///
/// Brackets inside strings (escapes included) are not counted. The scan is linear and allocation-free;
/// it does not validate the JSON (the parser does that afterwards).
pub(crate) fn nesting_depth(bytes: &[u8], limit: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
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
}
