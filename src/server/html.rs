//! Pure: HTML escaping and the plain page shell of the run page, setup and their refusals.
//! Self-contained pages: inline CSS, no external assets.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2328;background:#fff}\
h1{font-size:1.4rem}code,pre{font:13px/1.45 ui-monospace,monospace}pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:.6rem;border-radius:6px;max-height:30rem;overflow:auto}\
.muted{color:#59636e}.btn{font-size:1rem;padding:.5rem 1rem;border-radius:6px;border:1px solid #1f883d;background:#1f883d;color:#fff;cursor:pointer}";

/// A whole page: `title` is escaped, `body` is trusted HTML.
pub fn page(title: &str, extra_style: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>{}</title><style>{STYLE}{extra_style}</style></head><body>{body}</body></html>\n",
        escape(title)
    )
}

/// Pages run no script and load nothing: only their inline style.
const STATIC_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

/// An HTML answer. Pages are never cached (they hold signed links), may not be framed, and load
/// nothing from elsewhere.
pub fn respond(status: StatusCode, html: String) -> Response {
    respond_with_csp(status, html, STATIC_CSP)
}

/// An HTML answer under the given Content-Security-Policy.
pub fn respond_with_csp(status: StatusCode, html: String, csp: &str) -> Response {
    let mut resp = (status, html).into_response();
    if let Ok(v) = HeaderValue::from_str(csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// A short page that says what went wrong.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    respond(
        status,
        page(
            title,
            "",
            &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text)),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }
}
