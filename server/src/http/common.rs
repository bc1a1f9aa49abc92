//! Request plumbing shared by the handlers: state injection, bearer-token auth, admission
//! under the connection limit, query and body validation with clear 4xx answers.

use std::str::FromStr;
use std::sync::Arc;

use salvo::http::header::{AUTHORIZATION, CONNECTION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use salvo::http::{ParseError, StatusCode};
use salvo::prelude::*;
use serde_json::{Map, Value};

use crate::limits::ConnectionGuard;
use crate::metrics::{RejectReason, Scenario};
use crate::state::AppState;

/// Puts the application state into every request's depot.
#[derive(Debug)]
pub(crate) struct InjectState(pub(crate) Arc<AppState>);

#[handler]
impl InjectState {
    async fn handle(&self, depot: &mut Depot) {
        depot.insert_typed(Arc::clone(&self.0));
    }
}

/// The application state of this request.
pub(crate) fn state(depot: &Depot) -> Arc<AppState> {
    // InjectState runs before every route; its absence would be a router construction bug.
    Arc::clone(
        depot
            .get_typed::<Arc<AppState>>()
            .expect("InjectState hoop is installed on the root router"),
    )
}

/// Requires `Authorization: Bearer <token>` (or `?token=<token>`, for browsers'
/// `EventSource` and `WebSocket`, which cannot set headers) when a token is configured.
#[derive(Debug)]
pub(crate) struct RequireToken;

#[handler]
impl RequireToken {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let app = state(depot);
        let Some(expected) = app.config.token.as_deref() else {
            return;
        };
        let from_header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let from_query = req.queries().get("token").map(String::as_str);
        let ok = [from_header, from_query]
            .into_iter()
            .flatten()
            .any(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()));
        if !ok {
            app.metrics.rejected(RejectReason::Auth);
            res.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res.status_code(StatusCode::UNAUTHORIZED);
            res.render(Text::Plain("missing or invalid bearer token\n"));
            ctrl.skip_rest();
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers 400 with `message`, counted as a bad request.
pub(crate) fn bad_request(app: &AppState, res: &mut Response, message: &str) {
    reject(app, res, StatusCode::BAD_REQUEST, message);
}

/// Answers `status` with `message`, counted as a bad request.
pub(crate) fn reject(app: &AppState, res: &mut Response, status: StatusCode, message: &str) {
    app.metrics.rejected(RejectReason::BadRequest);
    res.status_code(status);
    res.render(Text::Plain(format!("{message}\n")));
}

/// Admits a streaming connection of `scenario`, or answers 503 (counted) at the limit.
pub(crate) fn admit(
    app: &AppState,
    scenario: Scenario,
    res: &mut Response,
) -> Option<ConnectionGuard> {
    let guard = app.limiter.try_admit(app.metrics.scenario(scenario));
    if guard.is_none() {
        app.metrics.rejected(RejectReason::Limit);
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        // The connection goes with the answer: a refused client holds no socket and no
        // buffers (10,000 refused keep-alive connections held ~170 MiB otherwise).
        res.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        res.render(Text::Plain(format!(
            "connection limit of {} reached\n",
            app.limiter.max()
        )));
    }
    guard
}

/// Reads query parameter `name` as a `T` within `min..=max`; `Ok(None)` when absent.
pub(crate) fn query_in_range<T>(
    req: &Request,
    name: &str,
    min: T,
    max: T,
) -> Result<Option<T>, String>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = req.queries().get(name) else {
        return Ok(None);
    };
    match raw.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(Some(v)),
        _ => Err(format!(
            "query parameter `{name}` must be an integer from {min} to {max}, got {raw:?}"
        )),
    }
}

/// The `Last-Event-ID` header (or `?last_event_id=`), which must be a decimal event id.
pub(crate) fn last_event_id(req: &Request) -> Result<Option<u64>, String> {
    let raw = match req.headers().get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| "Last-Event-ID is not visible ASCII".to_owned())?
                .to_owned(),
        ),
        None => req.queries().get("last_event_id").cloned(),
    };
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("Last-Event-ID must be a decimal event id, got {text:?}")),
    }
}

/// A request body that could not be used, with the status to answer.
pub(crate) struct BodyError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

/// Reads the body (at most `max` bytes) as UTF-8 text.
pub(crate) async fn body_text(req: &mut Request, max: usize) -> Result<String, BodyError> {
    let bytes = req.payload_with_max_size(max).await.map_err(|e| match e {
        ParseError::PayloadTooLarge => BodyError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body exceeds {max} bytes"),
        },
        other => BodyError {
            status: StatusCode::BAD_REQUEST,
            message: format!("could not read request body: {other}"),
        },
    })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| BodyError {
        status: StatusCode::BAD_REQUEST,
        message: "request body is not UTF-8".to_owned(),
    })
}

/// Reads the body as a JSON object (an empty body is an empty object); returns it with the
/// body's length in bytes.
pub(crate) async fn body_object(
    req: &mut Request,
    max: usize,
) -> Result<(Map<String, Value>, usize), BodyError> {
    let text = body_text(req, max).await?;
    Ok((parse_body_object(&text)?, text.len()))
}

/// A publish body as a JSON object; blank text is an empty object.
///
/// # Errors
/// 400 naming what is wrong: not JSON, or JSON but not an object.
pub(crate) fn parse_body_object(text: &str) -> Result<Map<String, Value>, BodyError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: "request body must be a JSON object".to_owned(),
        }),
        Err(e) => Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: format!("request body is not valid JSON: {e}"),
        }),
    }
}

/// Answers 202 with a JSON body.
pub(crate) fn accepted(res: &mut Response, body: &Value) {
    res.status_code(StatusCode::ACCEPTED);
    res.render(Text::Json(body.to_string()));
}
