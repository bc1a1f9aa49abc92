//! Index, browser pages, `/metrics` and `/healthz`.

use salvo::http::StatusCode;
use salvo::http::header::{CONTENT_TYPE, HeaderValue};
use salvo::prelude::*;

use super::common::state;

const INDEX: &str = include_str!("../pages/index.html");
const COUNTER: &str = include_str!("../pages/counter.html");
const CHAT: &str = include_str!("../pages/chat.html");
const DASHBOARD: &str = include_str!("../pages/dashboard.html");

/// `GET /`: index of every scenario and page.
#[handler]
pub(crate) async fn index(res: &mut Response) {
    res.render(Text::Html(INDEX));
}

/// `GET /pages/{name}`: `counter`, `chat` or `dashboard`.
#[handler]
pub(crate) async fn page(req: &mut Request, res: &mut Response) {
    let html = match req.param::<String>("name").as_deref() {
        Some("counter") => COUNTER,
        Some("chat") => CHAT,
        Some("dashboard") => DASHBOARD,
        _ => {
            res.status_code(StatusCode::NOT_FOUND);
            res.render(Text::Plain(
                "no such page; try /pages/counter, /pages/chat or /pages/dashboard\n",
            ));
            return;
        }
    };
    res.render(Text::Html(html));
}

/// `GET /healthz`: 200 `ok` while serving (`degraded` while its Redis backplane is away:
/// it serves, but other instances' events do not arrive), 503 once shutdown has begun;
/// always with the server's wall clock in [`wire::SERVER_TIME_HEADER`] (Unix µs), for
/// clients' clock-offset probes.
#[handler]
pub(crate) async fn healthz(depot: &mut Depot, res: &mut Response) {
    if let Ok(now) = HeaderValue::from_str(&wire::now_unix_us().to_string()) {
        res.headers_mut().insert(wire::SERVER_TIME_HEADER, now);
    }
    let app = state(depot);
    if app.shutdown.is_triggered() {
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        res.render(Text::Plain("shutting down\n"));
    } else if app.backplane.as_ref().is_some_and(|b| !b.is_up()) {
        res.render(Text::Plain("degraded\n"));
    } else {
        res.render(Text::Plain("ok\n"));
    }
}

/// `GET /metrics`: Prometheus text exposition.
#[handler]
pub(crate) async fn metrics(depot: &mut Depot, res: &mut Response) {
    let app = state(depot);
    let mut body = app.metrics.render(app.config.max_connections);
    if let Some(backplane) = &app.backplane {
        body.push_str(&backplane.render());
    }
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res.write_body(body).ok();
}
