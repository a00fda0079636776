//! Who may use the monitor: one tower layer around every monitor route, the built-in ones and
//! those `#[configure_monitor]` adds alike (they are served by the same master, on the same
//! port, next to the same actions), and around the fallback.
//!
//! In order, for each request:
//!
//! 1. **The ECV root and `/livez` stay open.** Load balancers and liveness probes poll them
//!    with whatever headers they are configured with and no credentials; they read one bit and
//!    change nothing.
//! 2. **No DNS rebinding.** When the monitor listens on loopback, the `Host` header must be
//!    `localhost` or a loopback address (any port). A page whose own name was re-pointed at
//!    127.0.0.1 would otherwise be same-origin with the monitor in the operator's browser.
//! 3. **No cross-site requests.** A request that a browser sends on behalf of another site
//!    (`Origin` other than `http(s)://<Host>`, or `Sec-Fetch-Site` other than `same-origin` or
//!    `none`; `same-site` counts as foreign, since another port on the same host is another
//!    application) is refused, so a web page cannot drive the monitor from an operator's
//!    browser. This covers reads too: which GETs have side effects (profiling) or reveal what
//!    they should not (logs) is not something a guard in front of user routes can know, and
//!    the only browser pages that have any business here are the monitor's own. Clients that
//!    send neither header (curl, scripts, Prometheus) are not browsers and pass.
//! 4. **The token** (`mon.token`), when set, as `Authorization: Bearer <token>`, on every route
//!    but the ECV's. `POST <ecv.mark_up>` and `POST <ecv.mark_down>` stay open like the ECV
//!    itself: deploy tools and balancers switch it without credentials, and the token is for
//!    the operator's view and actions. The debug page's static files (`/debug/assets/…`) need
//!    no token either: a browser cannot attach one to `<script src>`, and they carry no data.
//!    `GET /debug` from a browser is answered 401 with the page itself, whose script then asks
//!    for the token and sends it with every request it makes.
//!
//! The token is compared as SHA-256 digests, in constant time (`subtle`): neither the time an
//! answer takes nor the token's length tells a guesser how close it came.
//!
//! Its refusals are JSON like every other error of the monitor (`errors.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::options::{EcvMode, Options};

/// What a refused token is answered with, besides the status.
const CHALLENGE: &str = "Bearer realm=\"cluster2 monitor\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"cluster2 monitor\", error=\"invalid_token\"";

/// The debug page, which a browser opens without a token (see the module docs).
const DEBUG_PAGE: &str = "/debug";
/// The liveness probe's route: open like the ECV root.
pub(super) const LIVEZ: &str = "/livez";
/// The debug page's static files.
const DEBUG_ASSETS: &str = "/debug/assets/";

/// The monitor's access rules, built once from the options and the address it listens on.
#[derive(Clone)]
pub(crate) struct Guard {
    policy: Arc<Policy>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("token", &self.policy.token.is_some())
            .field("loopback", &self.policy.loopback)
            .finish_non_exhaustive()
    }
}

struct Policy {
    /// SHA-256 of the token, when one is required.
    token: Option<[u8; 32]>,
    /// Whether the monitor listens on loopback, where `Host` must name this machine.
    loopback: bool,
    /// Open to everyone: the ECV.
    ecv_root: String,
    /// Open to every client but a browser on another site: the ECV's switches.
    ecv_switches: Vec<String>,
}

impl Guard {
    /// The rules for a monitor listening on `listening` (every address of `mon_host`): on
    /// loopback only if all of them are. Options validation has already refused a monitor
    /// beyond loopback without a token, unless the user opted out; that opt-out is logged here,
    /// once.
    pub(crate) fn new(options: &Options, listening: &[SocketAddr]) -> Self {
        let loopback = listening
            .iter()
            .all(|addr| addr.ip().to_canonical().is_loopback());
        let token = options.mon.token.as_ref().map(|t| digest(t.expose()));
        if token.is_none() && !loopback {
            tracing::warn!(
                "the monitor on {} has no token (--mon.unsafe-no-token): anyone who can reach it \
                 can read the cluster and act on it",
                listening
                    .iter()
                    .map(SocketAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let ecv = &options.ecv;
        let ecv_switches = match ecv.mode {
            EcvMode::Control => vec![ecv.mark_up.clone(), ecv.mark_down.clone()],
            _ => Vec::new(),
        };
        Self {
            policy: Arc::new(Policy {
                token,
                loopback,
                ecv_root: ecv.root.clone(),
                ecv_switches,
            }),
        }
    }
}

impl<S> Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// A monitor route behind the [`Guard`].
#[derive(Clone)]
pub(crate) struct Guarded<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> std::fmt::Debug for Guarded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").finish_non_exhaustive()
    }
}

/// What the guard decided about one request.
enum Verdict {
    Pass,
    /// A browser opening the debug page without a token: the page, as a 401.
    PageWithoutToken,
    Refuse(Refusal),
}

/// Why a request is refused, answered as `{"error": message}`.
struct Refusal {
    status: StatusCode,
    /// `WWW-Authenticate`, for a missing or wrong token.
    challenge: Option<&'static str>,
    message: String,
}

impl Refusal {
    fn forbidden(message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            challenge: None,
            message,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = refuse(self.status, self.message);
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl<S> Service<Request<Body>> for Guarded<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let page_without_token = match self.policy.judge(&request) {
            Verdict::Refuse(refusal) => {
                return Box::pin(std::future::ready(Ok(refusal.into_response())));
            }
            Verdict::PageWithoutToken => true,
            Verdict::Pass => false,
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            if page_without_token {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE),
                );
            }
            Ok(response)
        })
    }
}

impl Policy {
    fn judge(&self, request: &Request<Body>) -> Verdict {
        let path = request.uri().path();
        if path == self.ecv_root || path == LIVEZ {
            return Verdict::Pass;
        }
        let headers = request.headers();
        let host = host(request);
        if let Err(refusal) = self
            .same_machine(host)
            .and_then(|()| same_origin(headers, host))
        {
            return Verdict::Refuse(refusal);
        }
        if self.ecv_switches.iter().any(|p| p == path) || path.starts_with(DEBUG_ASSETS) {
            return Verdict::Pass;
        }
        match self.token_check(headers) {
            Ok(()) => Verdict::Pass,
            Err(_)
                if path == DEBUG_PAGE
                    && *request.method() == Method::GET
                    && wants_html(headers) =>
            {
                Verdict::PageWithoutToken
            }
            Err(refusal) => Verdict::Refuse(refusal),
        }
    }

    /// On loopback, `Host` must name this machine: the DNS-rebinding guard.
    fn same_machine(&self, host: Option<&str>) -> Result<(), Refusal> {
        match host {
            Some(host) if self.loopback && !is_loopback_host(host) => {
                Err(Refusal::forbidden(format!(
                    "the Host header `{host}` does not name this machine: the monitor listens on \
                     loopback and answers only localhost or a loopback address (a guard against \
                     DNS rebinding)"
                )))
            }
            _ => Ok(()),
        }
    }

    fn token_check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        let (challenge, message) = match presented {
            Some(token) if bool::from(digest(token).ct_eq(expected)) => return Ok(()),
            Some(_) => (CHALLENGE_INVALID, "the token is not this monitor's"),
            None => (
                CHALLENGE,
                "this monitor requires its token (--mon.token): send Authorization: Bearer <token>",
            ),
        };
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            challenge: Some(challenge),
            message: message.to_owned(),
        })
    }
}

/// The authority the client asked for: `Host`, or an HTTP/2 request's `:authority`. A value
/// that is not text is kept as an empty name, which no check accepts.
fn host(request: &Request<Body>) -> Option<&str> {
    match request.headers().get(header::HOST) {
        Some(value) => Some(value.to_str().unwrap_or_default()),
        None => request.uri().authority().map(|a| a.as_str()),
    }
}

/// A browser's request must come from the monitor's own pages, or from the address bar.
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), Refusal> {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            let site = String::from_utf8_lossy(site.as_bytes());
            return Err(Refusal::forbidden(format!(
                "cross-site request refused: the browser sent it for another site \
                 (Sec-Fetch-Site: {site}); open the monitor's own address instead"
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let own = host.is_some_and(|host| {
            ["http://", "https://"].iter().any(|scheme| {
                origin
                    .strip_prefix(scheme)
                    .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
            })
        });
        if !own {
            let host = host.unwrap_or_default();
            return Err(Refusal::forbidden(format!(
                "cross-site request refused: Origin `{origin}` is not this monitor's \
                 (http://{host})"
            )));
        }
    }
    Ok(())
}

/// `localhost` or a loopback address, with or without a port: `127.0.0.1:8081`, `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    let digits = |port: &str| port.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(digits);
        return port_ok
            && address
                .parse::<Ipv6Addr>()
                .is_ok_and(|ip| IpAddr::V6(ip).to_canonical().is_loopback());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if digits(port) => name,
        Some(_) => return false,
        None => host,
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The token of `Bearer <token>` (the scheme in any case).
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether the client would render HTML: a browser navigating, not curl.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LocalHost:8081",
            "127.0.0.1",
            "127.0.0.1:8081",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8081",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8081",
            "localhost.evil.example",
            "10.0.0.1:8081",
            "0.0.0.0:8081",
            "[::2]:8081",
            "[::1",
            "[::1]x",
            "localhost:80x",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn origins() {
        let host = Some("127.0.0.1:8081");
        let ok = |pairs| same_origin(&headers(pairs), host).is_ok();
        assert!(ok(&[]));
        assert!(ok(&[("origin", "http://127.0.0.1:8081")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[("sec-fetch-site", "none")]));
        assert!(!ok(&[("origin", "http://127.0.0.1:8080")]));
        assert!(!ok(&[("origin", "http://evil.example")]));
        assert!(!ok(&[("origin", "null")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        assert!(!ok(&[
            ("origin", "http://127.0.0.1:8081"),
            ("sec-fetch-site", "cross-site")
        ]));
        assert!(same_origin(&headers(&[("origin", "http://x")]), None).is_err());
    }
}
