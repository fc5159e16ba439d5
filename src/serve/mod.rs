//! `account-usage serve`: the HTTP API and the embedded report page.
//!
//! What always holds:
//! - **One snapshot per request.** The served [`Snapshot`] is swapped whole,
//!   and only once a refresh has loaded it completely; a request clones the
//!   `Arc` once and answers from it to the end. `report` (the CLI) answers
//!   through the same [`Snapshot::report`], so the numbers are the same.
//! - **Tenancy.** The account comes from the path and must be the token's
//!   (or the token is a service token, `"*"`); everything the answer reads
//!   is selected by that account: channels by the snapshot's channels of
//!   the account, cache entries by a key that holds it. An account that is
//!   not granted gets exactly the body of an unknown one.
//! - **Caching keyed to the data.** An answer's weak ETag hashes the
//!   snapshot version and the normalized question, so a new run changes it
//!   at the next refresh and a matching `If-None-Match` gets 304 without
//!   any work.
//! - **Nothing internal leaks.** Errors are problem+json with our own
//!   one-line messages; a failure's cause is logged with the request id.
//!   Tokens travel in headers (the page keeps its token in the URL
//!   fragment), and no log line carries one.

pub mod auth;
pub mod cache;
pub mod coding;
mod page;
pub mod params;
pub mod problem;
pub mod stats;

use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};

use crate::calendar::{self, Interval};
use crate::metric::Metric;
use crate::report::engine::{AnsweredFrom, Report};
use crate::report::{self, Snapshot, format};
use crate::rollup::PartCache;
use crate::warehouse::manifest::Fnv64;
use crate::warehouse::{self, StoreSettings, Warehouse, WarehouseUrl};
use auth::{Grant, Verifier};
use cache::{Key, ResultCache};
use coding::Coding;
use params::Format;
use problem::Problem;
use stats::CacheUsage;

/// Largest request body accepted (the API takes none).
const BODY_LIMIT: usize = 16 * 1024;

/// Longest wait for in-flight requests after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Every warehouse error names the warehouse and what failed; a
    /// message of ours on top would only say it twice.
    #[error(transparent)]
    Warehouse(warehouse::Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
}

impl Error {
    /// Whether the user can fix it by changing the command (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Warehouse(e) => e.is_bad_input(),
            Error::Listen { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::AddrInUse
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::PermissionDenied
            ),
            Error::Serve(_) => false,
        }
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    Jwt(Box<Verifier>),
    /// Local use only: the CLI refuses it on a non-loopback address.
    None,
}

/// `serve`'s validated configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub warehouse: WarehouseUrl,
    pub store: StoreSettings,
    pub listen: SocketAddr,
    pub auth: Auth,
    pub cors_origins: Vec<HeaderValue>,
    pub refresh_interval: Duration,
    pub request_timeout: Duration,
    pub result_cache: usize,
    /// MiB the kept answers may take, by [`Answer::estimated_bytes`].
    pub result_cache_mib: u64,
    /// MiB of decoded rollup parts kept (0: decode every read).
    pub rollup_cache_mib: u64,
    pub grain_cache_mib: u64,
}

/// One computed answer, rendered lazily per format and content coding.
#[derive(Debug)]
pub struct Answer {
    report: Report,
    /// By format, then by coding: each rendered when first asked for.
    bodies: [[std::sync::OnceLock<bytes::Bytes>; Coding::COUNT]; 2],
}

impl Answer {
    fn new(report: Report) -> Answer {
        Answer {
            report,
            bodies: Default::default(),
        }
    }

    /// What the answer may come to take in memory: its rows (56 bytes
    /// each; labels are shared) and, once asked for, their JSON (about 100
    /// bytes a row) and CSV (about 60) bodies; compressed ones are a few
    /// percent of those.
    fn estimated_bytes(&self) -> u64 {
        const PER_ROW: u64 = 256;
        let r = &self.report;
        let rows = r.rows.len() + r.bucket_totals.len() + r.totals.len() + r.group_labels.len();
        (rows as u64).saturating_mul(PER_ROW).saturating_add(4096)
    }

    fn body(&self, format: Format, coding: Coding) -> bytes::Bytes {
        let by_coding = &self.bodies[format as usize];
        let identity = || {
            by_coding[Coding::Identity as usize]
                .get_or_init(|| match format {
                    Format::Json => format::json_compact(&self.report).into(),
                    Format::Csv => format::csv(&self.report).into(),
                })
                .clone()
        };
        match coding {
            Coding::Identity => identity(),
            _ => by_coding[coding as usize]
                .get_or_init(|| coding.encode(&identity()))
                .clone(),
        }
    }
}

/// The service's shared state.
#[derive(Debug)]
pub struct App {
    config: ServeConfig,
    warehouse: Warehouse,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    cache: ResultCache<Answer>,
    /// Outlive snapshots: a rollup part is revalidated against its object
    /// once per snapshot version; base-grain rows never change.
    caches: report::Caches,
    stats: stats::Stats,
    shutting_down: AtomicBool,
    /// Reports computed at once, one per core; the rest wait (within their
    /// timeout). A computation holds its permit to the end, even when its
    /// request timed out meanwhile, so a burst can neither take all memory
    /// nor pile up work nobody waits for.
    computing: Arc<tokio::sync::Semaphore>,
}

impl App {
    pub fn new(config: ServeConfig) -> Result<Arc<App>, Error> {
        let warehouse = Warehouse::open_read_only(&config.warehouse, &config.store).map_err(Error::Warehouse)?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Arc::new(App {
            cache: ResultCache::new(config.result_cache, config.result_cache_mib.saturating_mul(1 << 20)),
            caches: report::Caches {
                parts: (config.rollup_cache_mib > 0)
                    .then(|| Arc::new(PartCache::new(config.rollup_cache_mib.saturating_mul(1 << 20)))),
                grain: (config.grain_cache_mib > 0)
                    .then(|| Arc::new(report::GrainCache::new(config.grain_cache_mib.saturating_mul(1 << 20)))),
            },
            config,
            warehouse,
            snapshot: RwLock::new(None),
            stats: stats::Stats::default(),
            shutting_down: AtomicBool::new(false),
            computing: Arc::new(tokio::sync::Semaphore::new(threads)),
        }))
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Loads a snapshot and swaps it in if the data changed; `Ok(true)`
    /// when it did. An unchanged warehouse costs its markers and index
    /// only.
    pub async fn refresh(&self) -> Result<bool, report::Error> {
        let serving = self.snapshot().map(|s| s.version());
        let fresh = Snapshot::load_unless_at(self.warehouse.clone(), self.caches.clone(), serving).await?;
        self.stats.snapshot_loaded();
        let changed = fresh.is_some();
        if let Some(fresh) = fresh {
            tracing::info!(
                version = format!("{:016x}", fresh.version()),
                days = fresh.published().len(),
                latest_run = fresh.latest_run().map(|r| r.as_str()),
                "Serving a new warehouse snapshot."
            );
            *self.snapshot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(fresh));
            self.cache.clear();
        }
        Ok(changed)
    }

    /// Whether `/readyz` says yes.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::SeqCst) && self.snapshot().is_some()
    }

    fn grant(&self, headers: &HeaderMap) -> Result<Grant, Problem> {
        let verifier = match &self.config.auth {
            Auth::None => return Ok(Grant::All),
            Auth::Jwt(v) => v.as_ref(),
        };
        // One credential: RFC 9110 allows one Authorization field, and of
        // two (a proxy's and the client's, say) neither is taken on trust.
        let mut fields = headers.get_all(header::AUTHORIZATION).iter();
        let token = match (fields.next(), fields.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme's name is case-insensitive (RFC 9110 §11.1).
            let (scheme, token) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .ok_or_else(Problem::unauthorized)?;
        verifier.verify(token.trim()).map_err(|why| {
            tracing::debug!(reason = %why, "A token was refused.");
            Problem::unauthorized()
        })
    }

    /// The snapshot, once the token may read `account` and it exists there.
    fn authorize(&self, headers: &HeaderMap, account: &str) -> Result<(i64, Arc<Snapshot>), Problem> {
        let grant = self.grant(headers)?;
        let id = account.parse::<i64>().ok();
        let Some(id) = id.filter(|id| grant.allows(*id)) else {
            return Err(Problem::unknown_account(account));
        };
        let snapshot = self.snapshot().ok_or_else(Problem::not_ready)?;
        if snapshot.account(id).is_none() {
            return Err(Problem::unknown_account(account));
        }
        Ok((id, snapshot))
    }
}

/// Request ids: a per-process random prefix and a counter (unique, cheap,
/// and no uuid dependency).
#[derive(Clone)]
struct NextRequestId {
    prefix: u32,
    counter: Arc<AtomicU64>,
}

impl MakeRequestId for NextRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The header that carries a request's id, set on the way in and echoed.
const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

fn request_id_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok())
}

/// The router with every layer: what `serve` runs and what tests drive.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/accounts/{account}/report", get(report_handler))
        .route("/v1/accounts/{account}/channels", get(channels_handler))
        .route("/v1/accounts/{account}", get(account_handler))
        .route("/openapi.json", get(openapi_handler))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz_handler))
        .route("/metrics", get(metrics_handler))
        .route("/embed", get(page::embed))
        .route("/", get(|| async { axum::response::Redirect::temporary("/embed") }))
        .fallback(fallback_handler);
    layered(api, app)
}

/// Every layer around `routes`: timing and metrics, panics as 500, the body
/// limit, compression, request ids and CORS.
fn layered(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    let cors = if app.config.cors_origins.is_empty() {
        None
    } else {
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(app.config.cors_origins.clone()))
                .allow_methods([Method::GET, Method::HEAD])
                .allow_headers([header::AUTHORIZATION, header::ACCEPT, header::IF_NONE_MATCH])
                .expose_headers([header::ETAG, REQUEST_ID])
                .max_age(Duration::from_secs(600)),
        )
    };
    let ids = NextRequestId {
        prefix: random_u32(),
        counter: Arc::new(AtomicU64::new(1)),
    };
    // A panic is caught inside `observe`, so its 500 is counted and carries
    // the request id like any other problem.
    let router = routes
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("A handler panicked; answering 500 and serving on.");
            Problem::internal().into_response()
        }))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(CompressionLayer::new().gzip(true).br(true))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(ids));
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

fn random_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = Fnv64::default();
    h.write(&nanos.to_le_bytes());
    h.write(&std::process::id().to_le_bytes());
    h.finish() as u32
}

/// Times every request against `--request-timeout`, counts it by matched
/// route and status, and puts the request id into problem bodies.
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Shared, not copied: both outlive the request, which `next` takes.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str());
    let request_id_header = request.headers().get(REQUEST_ID).cloned();
    let request_id = request_id_header.as_ref().and_then(|v| v.to_str().ok());
    let method_ok = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let response = if !method_ok {
        Problem::method_not_allowed().into_response()
    } else {
        match tokio::time::timeout(app.config.request_timeout, next.run(request)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(route = %route, request_id, "A request timed out.");
                Problem::timed_out().into_response()
            }
        }
    };
    let response = with_request_id_in_problem(response, request_id).await;
    app.stats.record(route, response.status().as_u16(), started.elapsed());
    response
}

async fn with_request_id_in_problem(response: Response, id: Option<&str>) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    if !is_problem || id.is_none() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Our own body, already in memory: no limit is needed to read it.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Problem::internal().with_request_id(id).into_response();
    };
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}));
    value["request_id"] = json!(id);
    let body = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

async fn fallback_handler() -> Problem {
    Problem::not_found("no such endpoint; see /openapi.json")
}

async fn readyz_handler(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        "ready\n".into_response()
    } else {
        Problem::not_ready().into_response()
    }
}

async fn metrics_handler(State(app): State<Arc<App>>) -> Response {
    let mut caches = Vec::new();
    if app.config.result_cache > 0 && app.config.result_cache_mib > 0 {
        caches.push(CacheUsage {
            name: "result",
            entries: app.cache.len(),
            bytes: Some(app.cache.bytes()),
        });
    }
    let bounded = [
        ("rollup_parts", app.caches.parts.as_ref().map(|c| c.usage())),
        ("base_grain", app.caches.grain.as_ref().map(|c| c.usage())),
    ];
    for (name, usage) in bounded {
        if let Some((entries, bytes)) = usage {
            caches.push(CacheUsage {
                name,
                entries,
                bytes: Some(bytes),
            });
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.stats.render(&caches),
    )
        .into_response()
}

async fn openapi_handler() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

fn private_json(value: serde_json::Value) -> Response {
    let mut r = axum::Json(value).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    r
}

async fn account_handler(State(app): State<Arc<App>>, Path(account): Path<String>, headers: HeaderMap) -> Response {
    let (id, snapshot) = match app.authorize(&headers, &account) {
        Ok(ok) => ok,
        Err(p) => return p.into_response(),
    };
    let info = snapshot.account(id).expect("authorize checked the account");
    let run = snapshot.latest_run();
    // The page's default range ends on the last whole date: in a zone west
    // of UTC, the last published day's date has not ended yet.
    let complete = calendar::whole_dates(&info.zone(), snapshot.published());
    private_json(json!({
        "account_id": id,
        "name": info.name,
        "time_zone": info.zone().name(),
        "first_published_day": snapshot.published().iter().next(),
        "last_published_day": snapshot.published().iter().next_back(),
        "first_complete_date": complete.map(|(first, _)| first),
        "last_complete_date": complete.map(|(_, last)| last),
        "snapshot": {
            "version": format!("{:016x}", snapshot.version()),
            "latest_run_id": run.map(|r| r.as_str()),
            "latest_run_started_at": run.and_then(|r| r.started_at()).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        },
        "metrics": Metric::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "intervals": Interval::ALL.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
        "group_by": ["platform", "channel"],
    }))
}

async fn channels_handler(State(app): State<Arc<App>>, Path(account): Path<String>, headers: HeaderMap) -> Response {
    let (id, snapshot) = match app.authorize(&headers, &account) {
        Ok(ok) => ok,
        Err(p) => return p.into_response(),
    };
    // A source's infinite instants (and any past chrono's years) are no
    // RFC 3339 date, and NULL would say "still connected" of a channel
    // disconnected since ever: they are named as PostgreSQL and DuckDB do.
    let utc = |t: Option<i64>| {
        t.map(|t| match crate::model::to_datetime(t) {
            Some(d) => d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None if t < 0 => "-infinity".to_string(),
            None => "infinity".to_string(),
        })
    };
    let mut channels: Vec<_> = snapshot.channels(id).iter().collect();
    channels.sort_by_key(|c| c.id);
    let channels: Vec<_> = channels
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "name": c.name,
                "platform": c.platform,
                "environment": c.environment,
                "connected_at": utc(c.connected_at),
                "disconnected_at": utc(c.disconnected_at),
            })
        })
        .collect();
    private_json(json!({ "account_id": id, "channels": channels }))
}

fn etag_of(snapshot: &Snapshot, key: &Key, format: Format) -> HeaderValue {
    let mut h = Fnv64::default();
    h.write(&snapshot.version().to_le_bytes());
    // The question's own hash (its fields, as `Eq` compares them): the
    // formatted text cost a twentieth of a revalidation.
    key.question.hash(&mut h);
    h.write(&[format as u8]);
    HeaderValue::from_str(&format!("W/\"{:016x}\"", h.finish())).expect("hex is a valid header")
}

fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default();
    fn strip(t: &str) -> &str {
        t.trim().trim_start_matches("W/")
    }
    value.split(',').any(|t| t.trim() == "*" || strip(t) == strip(ours))
}

async fn report_handler(
    State(app): State<Arc<App>>,
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (id, snapshot) = match app.authorize(&headers, &account) {
        Ok(ok) => ok,
        Err(p) => return p.into_response(),
    };
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let accepts_csv = params::prefers_csv((!accept.is_empty()).then(|| accept.join(",")).as_deref());
    let (question, format) = match params::parse(id, query.as_deref(), accepts_csv) {
        Ok(q) => q,
        Err(message) => return Problem::bad_parameter(message).into_response(),
    };
    let key = Key {
        version: snapshot.version(),
        question,
    };
    let etag = etag_of(&snapshot, &key, format);
    let cache_headers = |r: &mut Response| {
        let h = r.headers_mut();
        h.insert(header::ETAG, etag.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
        h.insert(
            header::VARY,
            HeaderValue::from_static("Accept, Accept-Encoding, Authorization"),
        );
    };
    if matches_etag(&headers, &etag) {
        app.stats.not_modified();
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        cache_headers(&mut r);
        return r;
    }
    let answer = match app.cache.get(&key) {
        Some(a) => {
            app.stats.cache(true);
            a
        }
        None => {
            app.stats.cache(false);
            match compute(&app, snapshot, key).await {
                Ok(a) => a,
                Err(None) => return Problem::internal().into_response(),
                Err(Some(e)) => {
                    let problem = Problem::of_report(&e, id);
                    if problem.status >= 500 {
                        tracing::error!(
                            error = %crate::model::error_chain(&e),
                            request_id = request_id_of(&headers),
                            account = id,
                            "A report failed."
                        );
                    }
                    return problem.into_response();
                }
            }
        }
    };
    let content_type = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
    };
    // Compressed here rather than by the compression layer, so that a
    // cached answer is compressed once (the layer passes an encoded body).
    let coding = Coding::accepted(&headers);
    let mut r = ([(header::CONTENT_TYPE, content_type)], answer.body(format, coding)).into_response();
    if let Some(name) = coding.header_value() {
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
    }
    cache_headers(&mut r);
    r
}

/// Computes an answer under a permit, in a task of its own that finishes
/// (and fills the cache) even if the request is dropped; `Err(None)` if that
/// task failed.
async fn compute(app: &Arc<App>, snapshot: Arc<Snapshot>, key: Key) -> Result<Arc<Answer>, Option<report::Error>> {
    let Ok(permit) = app.computing.clone().acquire_owned().await else {
        return Err(None);
    };
    let app = app.clone();
    let mut work = Box::pin(async move {
        let _permit = permit;
        let report = snapshot.report(&key.question).await?;
        app.stats.answered(report.answered_from == AnsweredFrom::Rollups);
        let answer = Arc::new(Answer::new(report));
        app.cache.insert(key, answer.clone(), answer.estimated_bytes());
        Ok(answer)
    });
    // An answer that needs no waiting (rollups already decoded) is given at
    // once; the rest of any other goes to a task of its own, so that it is
    // finished and cached even if this request gives up first.
    if let Some(done) = futures::FutureExt::now_or_never(&mut work) {
        return done.map_err(Some);
    }
    match tokio::spawn(work).await {
        Ok(result) => result.map_err(Some),
        Err(e) => {
            tracing::error!(error = %e, "A report task failed.");
            Err(None)
        }
    }
}

/// Serves until `stop` resolves, then drains: `/readyz` turns 503 at once,
/// in-flight requests get up to [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(config: ServeConfig, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    let app = App::new(config.clone())?;
    // A missing bucket or refused credentials will not fix themselves; an
    // unreachable store might, so the server waits for it unready.
    if let Err(e) = app.warehouse.check_access().await {
        if e.is_bad_input() {
            return Err(Error::Warehouse(e));
        }
        tracing::warn!(error = %crate::model::error_chain(&e), "The warehouse is not reachable yet; serving unready until it is.");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(
        listen = %local,
        warehouse = %config.warehouse,
        auth = matches!(config.auth, Auth::Jwt(_)),
        refresh_interval_s = config.refresh_interval.as_secs_f64(),
        request_timeout_s = config.request_timeout.as_secs_f64(),
        result_cache = config.result_cache,
        result_cache_mib = config.result_cache_mib,
        rollup_cache_mib = config.rollup_cache_mib,
        grain_cache_mib = config.grain_cache_mib,
        "Serving."
    );
    let refresher = tokio::spawn(refresh_forever(app.clone()));
    let draining = app.clone();
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        stop.await;
        draining.shutting_down.store(true, Ordering::SeqCst);
        tracing::info!("Stopping: no new connections; in-flight requests may finish.");
        let _ = drained_tx.send(());
    };
    // An answer's headers and body can leave in two writes (the body is
    // wrapped for compression); with Nagle's algorithm the second waits for
    // the client's ACK of the first.
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY on a connection.");
        }
    });
    let server = axum::serve(listener, router(app.clone())).with_graceful_shutdown(shutdown);
    let server = tokio::spawn(async move { server.await });
    // Once the stop has come, in-flight requests get DRAIN_TIMEOUT.
    let result = tokio::select! {
        r = server => r,
        () = async {
            let _ = drained_rx.await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => {
            tracing::warn!("Requests still running after the drain timeout were dropped.");
            Ok(Ok(()))
        }
    };
    refresher.abort();
    match result {
        Ok(r) => r.map_err(Error::Serve),
        Err(_) => Ok(()),
    }
}

/// The first load retried until it works; then a refresh every interval.
async fn refresh_forever(app: Arc<App>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match app.refresh().await {
            Ok(_) => break,
            Err(e) => {
                app.stats.refresh_failed();
                tracing::warn!(error = %crate::model::error_chain(&e), retry_in_ms = backoff.as_millis() as u64, "Cannot load the warehouse snapshot yet.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(app.config.refresh_interval);
            }
        }
    }
    let mut tick = tokio::time::interval(app.config.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = app.refresh().await {
            app.stats.refresh_failed();
            tracing::warn!(error = %crate::model::error_chain(&e), "A snapshot refresh failed; serving the previous snapshot.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn app() -> Arc<App> {
        App::new(ServeConfig {
            warehouse: WarehouseUrl::Local(std::env::temp_dir().join("account-usage-serve-unit")),
            store: StoreSettings::default(),
            listen: "127.0.0.1:0".parse().unwrap(),
            auth: Auth::None,
            cors_origins: Vec::new(),
            refresh_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(1),
            result_cache: 4,
            result_cache_mib: 1,
            rollup_cache_mib: 1,
            grain_cache_mib: 1,
        })
        .unwrap()
    }

    async fn call(router: &Router, path: &str) -> Response {
        let request = axum::http::Request::builder().uri(path).body(Body::empty()).unwrap();
        router.clone().oneshot(request).await.unwrap()
    }

    async fn boom() -> &'static str {
        panic!("internal detail that must not leak")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_problem_and_the_server_serves_on() {
        let routes = Router::new()
            .route("/boom", get(boom))
            .route("/livez", get(|| async { "ok\n" }));
        let router = layered(routes, app());
        let r = call(&router, "/boom").await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("internal detail"), "{text}");
        assert!(text.contains(&id), "the problem names its request id: {text}");
        assert_eq!(call(&router, "/livez").await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn not_ready_until_a_snapshot_is_loaded() {
        let app = app();
        let router = router(app.clone());
        assert_eq!(call(&router, "/readyz").await.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            call(&router, "/v1/accounts/1").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        app.refresh().await.unwrap();
        assert_eq!(call(&router, "/readyz").await.status(), StatusCode::OK);
        app.shutting_down.store(true, Ordering::SeqCst);
        assert_eq!(call(&router, "/readyz").await.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
