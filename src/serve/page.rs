//! `GET /embed`: the Account usage report as one self-contained page.
//!
//! The page and the vendored Chart.js (`vendor/chart.js`, MIT) are compiled
//! into the binary and served as one document: no CDN, no second request,
//! no network but the API. Its content security policy allows nothing
//! else. The token stays in the URL fragment, which browsers never send.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("page.html");
const CHART_JS: &str = include_str!("../../vendor/chart.js/chart.umd.min.js");

fn page() -> &'static str {
    static PAGE_WITH_CHART: OnceLock<String> = OnceLock::new();
    PAGE_WITH_CHART.get_or_init(|| PAGE.replacen("/*CHART_JS*/", CHART_JS, 1))
}

pub async fn embed() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_embeds_chart_js_once_and_loads_nothing_from_elsewhere() {
        let page = super::page();
        assert!(page.contains("Chart.js v4"));
        assert!(!page.contains("/*CHART_JS*/"));
        assert!(!page.contains("src=\"http"), "no external scripts");
        assert!(!page.contains("href=\"http"), "no external styles");
    }
}
