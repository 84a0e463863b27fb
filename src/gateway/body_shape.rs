//! A bound on what parsing a request body may allocate, checked before it is parsed.
//!
//! serde_json already bounds nesting (128 levels). Width is the other attack: a 10 MiB body of
//! `[[],[],…]` is 3.5 million values, and each becomes a 32-byte `Value` in a growing `Vec`
//! (about 300 MiB of memory for one request, before any limit is checked). A body may hold at
//! most [`MAX_VALUES`] JSON values; real requests hold far fewer (a long conversation with tools
//! is a few thousand, a base64 image is one string).

/// The most JSON values a request body may hold (arrays, objects and scalars together): about
/// 20 MiB of parsed values at most.
pub const MAX_VALUES: usize = 250_000;

/// Bodies this small cannot hold enough values to matter (one value needs at least two bytes),
/// and are not scanned.
const SCAN_FROM_BYTES: usize = 2 * MAX_VALUES;

/// Whether parsing `body` stays within [`MAX_VALUES`]: counts the places a value can start
/// outside strings (each `[`, `{` and `,` — an upper bound of the values, give or take one).
pub fn within_bounds(body: &[u8]) -> bool {
    if body.len() < SCAN_FROM_BYTES {
        return true;
    }
    let mut values = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' | b',' => {
                values += 1;
                if values > MAX_VALUES {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_body_is_out_of_bounds_and_a_long_text_is_not() {
        let wide = format!("[{}[]]", "[],".repeat(MAX_VALUES));
        assert!(!within_bounds(wide.as_bytes()));
        // The same size of text in one string (commas and brackets inside it do not count).
        let text = format!(
            r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
            "[],\\\"".repeat(MAX_VALUES)
        );
        assert!(within_bounds(text.as_bytes()));
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        // Below the scan size, nothing is counted.
        assert!(within_bounds(b"[[],[],[]]"));
    }
}
