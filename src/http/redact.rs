//! Redaction of webhook URLs for what the API shows (`GET /api/v1/deliveries`): target URLs
//! carry secrets in several places, and anyone with the read token must not learn them. The
//! outbox keeps the real URL; only the answer is redacted.
//!
//! - userinfo: `https://user:pw@host` → `https://***@host`;
//! - query values: `?access_token=abc&x=1` → `?access_token=***&x=***` (names stay, so the
//!   reader still sees which parameters were set);
//! - path segments that look like tokens: 16 or more characters mixing letters and digits
//!   (Slack `…/services/T0/B0/<token>`, Feishu `…/hook/<uuid>`, Discord, Telegram `bot<id>:<key>`);
//! - the fragment.

/// What a secret is replaced with.
const MASK: &str = "***";

/// `url` with its secrets masked (see the module overview). Text that is not a URL passes
/// through the same rules (a `?` still starts a query).
pub fn url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, _)) => (r, Some(MASK)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = if scheme.is_empty() {
        ("", rest)
    } else {
        match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        }
    };
    let mut out = String::from(scheme);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let path: Vec<&str> = path
        .split('/')
        .map(|seg| if looks_like_token(seg) { MASK } else { seg })
        .collect();
    out.push_str(&path.join("/"));
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if !v.is_empty() => format!("{k}={MASK}"),
                Some((k, _)) => format!("{k}="),
                None if pair.is_empty() => String::new(),
                // a bare value (`?s3cr3t`) may be the secret itself
                None => MASK.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A path segment long and random-looking enough to be a credential.
fn looks_like_token(seg: &str) -> bool {
    seg.chars().count() >= 16
        && seg.chars().any(|c| c.is_ascii_digit())
        && seg.chars().any(|c| c.is_alphabetic())
}

/// `text` (an error message, say) with every `scheme://…` in it passed through [`url`]; a URL
/// runs to the next whitespace or quote.
pub fn urls_in(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |j| j + 1);
        let len = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
            .map_or(rest.len() - i, |n| n);
        let end = i + len;
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_and_userinfo_are_masked() {
        assert_eq!(
            url("https://oapi.dingtalk.com/robot/send?access_token=abc123"),
            "https://oapi.dingtalk.com/robot/send?access_token=***"
        );
        assert_eq!(
            url("https://user:pw@host:8443/hook?a=1&b=&c"),
            "https://***@host:8443/hook?a=***&b=&***"
        );
        assert_eq!(url("http://u@h/x#frag"), "http://***@h/x#***");
        // an @ in the path or query is not userinfo
        assert_eq!(url("http://h/a@b?m=x@y"), "http://h/a@b?m=***");
    }

    #[test]
    fn plain_urls_pass_unchanged() {
        for u in [
            "http://127.0.0.1:8080/hook",
            "https://alerts.example.com/api/v2/alerts",
            "http://h",
            "http://h/",
            "https://hooks.example/alertmanager-receiver",
        ] {
            assert_eq!(url(u), u);
        }
    }

    #[test]
    fn token_like_path_segments_are_masked() {
        assert_eq!(
            url("https://hooks.slack.com/services/T0001/B0001/a1B2c3D4e5F6g7H8i9J0k1L2"),
            "https://hooks.slack.com/services/T0001/B0001/***"
        );
        assert_eq!(
            url(
                "https://open.feishu.cn/open-apis/bot/v2/hook/3f2b7c1e-4d5a-4b6c-9e8f-0a1b2c3d4e5f"
            ),
            "https://open.feishu.cn/open-apis/bot/v2/hook/***"
        );
    }

    #[test]
    fn urls_inside_messages_are_masked() {
        assert_eq!(
            urls_in("https://h/send?access_token=s3cret: Connection Failed: refused"),
            "https://h/send?access_token=*** Connection Failed: refused"
        );
        assert_eq!(
            urls_in("posting to \"http://a:b@h/x\" failed; retry http://h/y?k=v now"),
            "posting to \"http://***@h/x\" failed; retry http://h/y?k=*** now"
        );
        assert_eq!(urls_in("HTTP 500"), "HTTP 500");
    }
}
