//! The answers mintd's servers share: a refusal on the socket (its reason in the `mint-reason` header and
//! the body), and "no token could be had", which every route words for its own client.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use mint_api::REASON_HEADER;

use crate::cache::MintFailure;

/// No token: 503 if waiting may help (with a rate limit's `Retry-After`), else 502. `answer` words the
/// message for its client: the socket's refusal, git's plain text, the API's JSON.
pub(crate) fn mint_failed<B>(
    failure: &MintFailure,
    answer: impl FnOnce(StatusCode, &str) -> Response<B>,
) -> Response<B> {
    let status = if failure.transient {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    let mut response = answer(status, &failure.message);
    if let Some(secs) = failure.retry_after(tokio::time::Instant::now()) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    response
}

/// An error or refusal: the reason both in the `mint-reason` header and as the body.
pub(crate) fn refusal(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    let mut response = empty(status, Some(reason));
    *response.body_mut() = Full::new(Bytes::from(format!("{reason}\n")));
    response
}

pub(crate) fn empty(status: StatusCode, reason: Option<&str>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status);
    if let Some(reason) = reason {
        builder = builder.header(REASON_HEADER, header_safe(reason));
    }
    builder
        .body(Full::new(Bytes::new()))
        .expect("sanitised headers are valid")
}

/// Header values must be visible ASCII; reasons are ours and GitHub's words, so this rarely changes anything.
pub(crate) fn header_safe(reason: &str) -> String {
    reason
        .chars()
        .take(1000)
        .map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' })
        .collect()
}
