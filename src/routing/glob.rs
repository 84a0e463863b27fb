//! Model-name globs for routing rules: `*` matches any run of characters (including none),
//! `?` exactly one; everything else matches itself. No allocation, linear in practice.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0usize, 0usize);
    // Position of the last `*` seen and the text position it was tried at, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_and_wildcards() {
        assert!(matches("gpt-4o", "gpt-4o"));
        assert!(!matches("gpt-4o", "gpt-4o-mini"));
        assert!(matches("gpt-4o*", "gpt-4o"));
        assert!(matches("gpt-4o*", "gpt-4o-mini"));
        assert!(!matches("gpt-4o*", "gpt-4"));
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("claude-*-4*", "claude-sonnet-4-20250514"));
        assert!(!matches("claude-*-4*", "claude-3-5-haiku"));
        assert!(matches("o?-mini", "o4-mini"));
        assert!(!matches("o?-mini", "o-mini"));
        assert!(matches("*mini", "gpt-4o-mini"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("openai/*", "openai/gpt-4o"));
        assert!(!matches("", "x"));
        assert!(matches("", ""));
    }
}
