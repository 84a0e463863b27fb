//! Keeping input values out of messages. Error messages of parsers echo the offending value
//! (`invalid type: string "sk-…"`), and a value in a wrong place may well be a key, so every
//! message that reaches a status, an Event or a log goes through here first.

/// Rewrites a serde error message so it names the kind of value and the field, never the value:
/// `invalid type: string "sk-123", expected struct SecretKeyRef` becomes
/// `invalid type: a string, expected struct SecretKeyRef`.
pub fn serde_message(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(position) = message.find(marker) {
            let (head, rest) = message.split_at(position + marker.len());
            let (found, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
            let kind = match found.split([' ', '`', '"']).next().unwrap_or_default() {
                "" => "value",
                "floating" => "number",
                other => other,
            };
            let tail = if expected.is_empty() {
                String::new()
            } else {
                format!(", expected{expected}")
            };
            return format!("{head}a {kind}{tail}");
        }
    }
    if let Some(position) = message.find("unknown variant ") {
        let head = &message[..position];
        let expected = message[position..]
            .split_once(", expected")
            .map(|(_, e)| e)
            .unwrap_or("");
        return format!("{head}unknown variant, expected{expected}");
    }
    // Field names come from our schema, not from values.
    if ["missing field ", "unknown field ", "duplicate field "]
        .iter()
        .any(|p| message.starts_with(p))
    {
        return message.to_owned();
    }
    // Messages of other shapes may still quote input: drop anything quoted.
    strip_quoted(message)
}

/// Removes `"…"` and `` `…` `` spans.
fn strip_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside: Option<char> = None;
    for c in message.chars() {
        match inside {
            Some(close) if c == close => {
                inside = None;
                out.push_str("<redacted>");
            }
            Some(_) => {}
            None if c == '"' || c == '`' => inside = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// Reduces a URL-ish string to `scheme://host[:port]` for messages: no user-info (which may
/// hold a key), no path, no query.
pub fn url_for_message(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let scheme: String = scheme
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    format!("{scheme}://{}", host.chars().take(255).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_their_values() {
        assert_eq!(
            serde_message("invalid type: string \"sk-proj-SECRET\", expected struct SecretKeyRef"),
            "invalid type: a string, expected struct SecretKeyRef"
        );
        assert_eq!(
            serde_message("invalid value: integer `-5`, expected u64"),
            "invalid value: a integer, expected u64"
        );
        assert_eq!(
            serde_message(
                "unknown variant `sk-SECRET`, expected one of `platform`, `tenant`, `cli`"
            ),
            "unknown variant, expected one of `platform`, `tenant`, `cli`"
        );
        assert_eq!(
            serde_message("missing field `name`"),
            "missing field `name`"
        );
        assert!(!serde_message("something \"sk-SECRET\" odd").contains("SECRET"));
        assert_eq!(
            serde_message(
                "keys: invalid type: string \"c2VjcmV0\", expected a sequence at line 2 column 7"
            ),
            "keys: invalid type: a string, expected a sequence at line 2 column 7"
        );
    }

    #[test]
    fn urls_lose_credentials_paths_and_queries() {
        assert_eq!(
            url_for_message("https://user:sk-SECRET@api.example.com/v1?key=SECRET"),
            "https://api.example.com"
        );
        assert_eq!(url_for_message("http://[::1]:8080/x"), "http://[::1]:8080");
        assert_eq!(url_for_message("sk-SECRET"), "<not a URL>");
    }
}
