//! Plain server-rendered pages: escaping, the page frame, form and query parsing, cookies and redirects.

use std::fmt::Write as _;

use http::{HeaderValue, Response, StatusCode, header};

use crate::server::{Body, full};

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "fakehub_session";

/// Escape text for an HTML element or a quoted attribute.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// A whole page. `title` is text (escaped here); `body` is HTML already escaped by its builder.
pub(crate) fn page(status: StatusCode, title: &str, signed_in: Option<&str>, body: &str) -> Response<Body> {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title} · fakehub</title>\n\
         <style>body{{font-family:sans-serif;max-width:46em;margin:2em auto;padding:0 1em;line-height:1.4}}\
         header{{border-bottom:1px solid #ccc;margin-bottom:1em;padding-bottom:.5em}}\
         form.inline{{display:inline}} fieldset{{margin:1em 0}} .muted{{color:#666}}\
         pre{{background:#f6f8fa;padding:1em;white-space:pre-wrap}}</style>\n</head>\n<body>\n<header>\
         <strong>fakehub</strong> <span class=\"muted\">a stand-in GitHub</span>",
        title = esc(title)
    );
    if let Some(login) = signed_in {
        let _ = write!(
            html,
            " · signed in as <strong id=\"signed-in-user\">{}</strong> \
             <form class=\"inline\" method=\"post\" action=\"/logout\">\
             <button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
            esc(login)
        );
    }
    let _ = write!(
        html,
        "</header>\n<main>\n<h1>{}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        esc(title)
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(html))
        .expect("static headers are valid")
}

/// `302 Found` to `location` (what GitHub answers on its web pages, GET or POST alike).
pub(crate) fn redirect(location: &str) -> Response<Body> {
    redirect_with(StatusCode::FOUND, location)
}

/// `303 See Other`: after a form POST, GET the next page.
pub(crate) fn see_other(location: &str) -> Response<Body> {
    redirect_with(StatusCode::SEE_OTHER, location)
}

fn redirect_with(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(full(format!(
            "<!DOCTYPE html>\n<p>Redirecting to <a href=\"{0}\">{0}</a>.</p>\n",
            esc(location)
        )))
        .expect("static headers are valid");
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

/// `application/x-www-form-urlencoded` (a query string or a form body) as ordered pairs.
pub(crate) fn parse_form(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes()).into_owned().collect()
}

/// The first value of `key`.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Every value of `key` (repeated checkboxes).
pub(crate) fn fields<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Pairs as a query string, encoded.
pub(crate) fn encode_query(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

/// `url` with `pairs` appended to its query.
pub(crate) fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{}", encode_query(pairs))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A hidden form field.
pub(crate) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn queries_round_trip() {
        let url = with_query("http://x/setup?a=1", &[("state", "a b&c=d")]);
        assert_eq!(url, "http://x/setup?a=1&state=a+b%26c%3Dd");
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        assert_eq!(field(&parse_form(query), "state"), Some("a b&c=d"));
    }
}
