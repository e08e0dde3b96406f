//! Sending one request to the cluster: the endpoints in turn (the preferred one first), a retry
//! on the next one when that is safe, bounded backoff between rounds, and learning which node
//! is the leader; a long poll (a wait in a lock's queue) asks each time for what is left of its
//! wait. The only module that speaks HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use crate::endpoints::{Endpoint, Endpoints};
use crate::error::{from_answer, Attempt};
use crate::retry::{backoff, may_retry, Failure, Safety};
use crate::wait::{ask_for, RETRY_PAUSE_CAP};
use crate::Error;

/// One call of the HTTP contract.
pub(crate) struct Request {
    pub method: Method,
    /// Path segments, percent-encoded on the way out: `["sessions", id, "locks", resource]`.
    pub path: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    pub safety: Safety,
    /// Set for a long poll, an acquire that waits in the lock's queue: when the caller's wait
    /// ends. Each attempt's body gets `"wait"`, the whole seconds left until then (`wait::ask_for`),
    /// its HTTP timeout grows by as much, and rounds follow each other without a long pause.
    pub wait_until: Option<Instant>,
}

impl Request {
    pub fn new(method: Method, path: &[&str], safety: Safety) -> Request {
        Request {
            method,
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            safety,
            wait_until: None,
        }
    }

    /// Whether this request may have changed something despite `failure`: never a read.
    fn maybe_applied(&self, failure: &Failure) -> bool {
        self.method != Method::GET && failure.maybe_applied()
    }
}

/// A node's answer that was not a 503.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    /// `host:port` of the node that answered.
    pub endpoint: String,
    /// An earlier attempt of this call may have taken effect, so this answer may describe the
    /// state after it: a release that answers LOCK_NOT_HELD was probably already applied.
    pub after_maybe_applied: bool,
}

impl Answer {
    /// The error this answer means, if it is one.
    pub fn into_result(self) -> Result<Answer, Error> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(from_answer(&self.endpoint, self.status.as_u16(), &self.body))
        }
    }
}

/// How long one call may keep trying.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub deadline: Instant,
    /// Rounds of attempts over all endpoints, with a backoff between rounds.
    pub rounds: u32,
}

/// How the transport behaves; see `ClientBuilder` for what each knob means.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_budget: Duration,
    pub rounds: u32,
}

pub(crate) struct Transport {
    http: reqwest::Client,
    pub endpoints: Endpoints,
    pub settings: Settings,
    /// Set while a leader lookup runs, so that a burst of calls starts only one.
    discovering: AtomicBool,
    /// When the last leader lookup started: while the preference holds, at most one lookup per
    /// `REDISCOVER` (the leader's address may match no configured endpoint). A std mutex,
    /// never held across an await.
    last_lookup: Mutex<Option<Instant>>,
}

/// How often to look for the leader again while the preferred endpoint keeps answering.
const REDISCOVER: Duration = Duration::from_secs(5);

impl Transport {
    pub fn new(endpoints: Endpoints, settings: Settings) -> Result<Transport, Error> {
        let http = reqwest::Client::builder()
            // A lock service is reached directly; an HTTP proxy from the environment would only
            // add a hop that can fail on its own.
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| Error::InvalidInput { field: "client".into(), reason: e.to_string() })?;
        Ok(Transport { http, endpoints, settings, discovering: AtomicBool::new(false), last_lookup: Mutex::new(None) })
    }

    /// The default budget of a call: `retry_budget` from now.
    pub fn budget(&self) -> Budget {
        Budget { deadline: Instant::now() + self.settings.retry_budget, rounds: self.settings.rounds }
    }

    /// Sends `request` until a node answers (anything but 503), the budget runs out, or a
    /// failure makes a retry unsafe.
    pub async fn send(self: &Arc<Self>, request: &Request, budget: Budget) -> Result<Answer, Error> {
        let mut tried: Vec<Attempt> = Vec::new();
        let mut maybe_applied = false;
        'rounds: for round in 0..budget.rounds {
            let mut retry_after = None;
            for index in self.endpoints.round() {
                let now = Instant::now();
                if now >= budget.deadline {
                    break 'rounds;
                }
                // A long poll asks for what is left of its wait, and is given as long again.
                let wait = request.wait_until.map(|until| ask_for(until.saturating_duration_since(now)));
                let timeout =
                    (self.settings.request_timeout + Duration::from_secs(wait.unwrap_or(0))).min(budget.deadline - now);
                let endpoint = self.endpoints.get(index).authority.clone();
                match self.attempt(self.endpoints.get(index), request, wait, timeout).await {
                    Ok((status, body)) => {
                        let moved = self.endpoints.answered(index);
                        if moved || !self.endpoints.leader_known() {
                            self.find_leader_in_background(moved);
                        }
                        return Ok(Answer { status, body, endpoint, after_maybe_applied: maybe_applied });
                    }
                    Err((failure, asked_to_wait)) => {
                        tracing::debug!(%endpoint, failure = failure.describe(), "lock.io call failed");
                        self.endpoints.failed(index);
                        retry_after = retry_after.max(asked_to_wait);
                        maybe_applied |= request.maybe_applied(&failure);
                        let line = Attempt { endpoint, failure: failure.describe().to_string() };
                        match tried.iter_mut().find(|a| a.endpoint == line.endpoint) {
                            Some(previous) => *previous = line,
                            None => tried.push(line),
                        }
                        if !may_retry(request.safety, &failure) {
                            return Err(Error::Unavailable { tried, outcome_unknown: true });
                        }
                    }
                }
            }
            let mut pause = backoff(round, retry_after);
            if request.wait_until.is_some() {
                // The server keeps a waiter's place for 2 s after its connection broke.
                pause = pause.min(RETRY_PAUSE_CAP);
            }
            if round + 1 == budget.rounds || Instant::now() + pause >= budget.deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        Err(Error::Unavailable { tried, outcome_unknown: maybe_applied })
    }

    /// One attempt at one endpoint, which need not be configured: no retry, no failover.
    pub async fn send_once(&self, endpoint: &Endpoint, request: &Request) -> Result<Answer, Error> {
        let timeout = self.settings.request_timeout;
        match self.attempt(endpoint, request, None, timeout).await {
            Ok((status, body)) => {
                Ok(Answer { status, body, endpoint: endpoint.authority.clone(), after_maybe_applied: false })
            }
            Err((failure, _)) => Err(Error::Unavailable {
                tried: vec![Attempt { endpoint: endpoint.authority.clone(), failure: failure.describe().to_string() }],
                outcome_unknown: request.maybe_applied(&failure),
            }),
        }
    }

    /// One request to one endpoint, with `"wait": wait` added to the body of a long poll. A 503
    /// is a failure (with its `Retry-After`); every other answer is the node's word.
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        request: &Request,
        wait: Option<u64>,
        timeout: Duration,
    ) -> Result<(StatusCode, Value), (Failure, Option<Duration>)> {
        let mut builder = self.http.request(request.method.clone(), url(endpoint, request)).timeout(timeout);
        match (&request.body, wait) {
            (body, Some(wait)) => {
                let mut body = body.clone().unwrap_or_else(|| serde_json::json!({}));
                body["wait"] = wait.into();
                builder = builder.json(&body);
            }
            (Some(body), None) => builder = builder.json(body),
            (None, None) => {}
        }
        let response = builder.send().await.map_err(|e| (failure(&e, timeout), None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(|e| (failure(&e, timeout), None))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let reason = body["error"].as_str().map(|e| format!("503: {e}")).unwrap_or_else(|| "503".to_string());
            // Only an explicit "not_applied" proves nothing happened.
            let outcome_unknown = body["outcome"].as_str() != Some("not_applied");
            return Err((Failure::Unavailable { reason, outcome_unknown }, retry_after));
        }
        Ok((status, body))
    }

    /// Opens a stream (`GET /events`) at one endpoint, sending `Last-Event-ID` when given: the
    /// response once its headers arrived (within the request timeout; the body has none, the
    /// caller watches the gaps between chunks), or the node's answer if it refused (`Ok(Err)`),
    /// or a failure worth trying elsewhere (`Err`).
    pub async fn open_stream(
        &self,
        endpoint: &Endpoint,
        request: &Request,
        last_event_id: Option<String>,
    ) -> Result<Result<reqwest::Response, Error>, Failure> {
        let timeout = self.settings.request_timeout;
        let mut builder = self.http.request(request.method.clone(), url(endpoint, request));
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id);
        }
        let response = match tokio::time::timeout(timeout, builder.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(failure(&e, timeout)),
            Err(_) => return Err(Failure::Lost(format!("no answer within {}", humantime::format_duration(timeout)))),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Ok(response));
        }
        let text = tokio::time::timeout(timeout, response.text()).await.ok().and_then(Result::ok).unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let reason = body["error"].as_str().map(|e| format!("503: {e}")).unwrap_or_else(|| "503".to_string());
            return Err(Failure::Unavailable { reason, outcome_unknown: false });
        }
        Ok(Err(from_answer(&endpoint.authority, status.as_u16(), &body)))
    }

    /// Asks the endpoints, in turn, which member leads and prefers the configured endpoint with
    /// that member's HTTP address. Runs beside the calls, never in their way. Unless the
    /// preference just `moved`, at most once per `REDISCOVER`.
    fn find_leader_in_background(self: &Arc<Self>, moved: bool) {
        {
            let mut last = self.last_lookup.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if !moved && last.is_some_and(|at| now < at + REDISCOVER) {
                return;
            }
            if self.discovering.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(now);
        }
        let transport = Arc::clone(self);
        tokio::spawn(async move {
            let request = Request::new(Method::GET, &["cluster", "status"], Safety::Repeatable);
            for index in transport.endpoints.round() {
                if let Ok((status, body)) =
                    transport.attempt(transport.endpoints.get(index), &request, None, Duration::from_secs(2)).await
                {
                    if status.is_success() {
                        if let Some(http) = leader_http(&body) {
                            transport.endpoints.leader_is(http);
                        }
                        break;
                    }
                }
            }
            transport.discovering.store(false, Ordering::Release);
        });
    }
}

/// `request`'s URL at `endpoint`: its path segments percent-encoded, then its query.
fn url(endpoint: &Endpoint, request: &Request) -> reqwest::Url {
    let mut url = endpoint.base.clone();
    url.path_segments_mut().expect("http URLs have a path").pop_if_empty().extend(&request.path);
    if !request.query.is_empty() {
        url.query_pairs_mut().extend_pairs(request.query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    url
}

/// The leader's advertised HTTP address in a `/cluster/status` body.
fn leader_http(status: &Value) -> Option<&str> {
    let leader = status["leader_id"].as_u64()?;
    let members = status["members"].as_array()?;
    members.iter().find(|m| m["id"].as_u64() == Some(leader))?["http"].as_str()
}

/// What a reqwest error means for a retry: a connection that never opened means the request
/// was not sent; anything later may have delivered it.
fn failure(e: &reqwest::Error, timeout: Duration) -> Failure {
    let cause = root_cause(e);
    if e.is_connect() {
        Failure::NotSent(cause)
    } else if e.is_timeout() {
        Failure::Lost(format!("no answer within {}", humantime::format_duration(round_ms(timeout))))
    } else {
        Failure::Lost(cause)
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// The innermost error's text, which names the problem (`connection refused`), not the layer.
fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &(dyn std::error::Error + 'static) = e;
    let mut io_kind = None;
    loop {
        if let Some(io) = source.downcast_ref::<std::io::Error>() {
            if io.kind() != std::io::ErrorKind::Other {
                io_kind = Some(io.kind());
            }
        }
        match source.source() {
            Some(next) => source = next,
            None => break,
        }
    }
    io_kind.map(|k| k.to_string()).unwrap_or_else(|| source.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_leader_is_found_in_cluster_status() {
        let members =
            json!([{"id": 1, "http": "127.0.0.1:5000"}, {"id": 2, "http": "127.0.0.1:5001"}, {"id": 3, "http": null}]);
        let table = [
            (json!({"leader_id": 2, "members": members}), Some("127.0.0.1:5001")),
            (json!({"leader_id": 3, "members": members}), None),
            (json!({"leader_id": null, "members": members}), None),
            (json!({"leader_id": 4, "members": members}), None),
        ];
        for (status, expected) in table {
            assert_eq!(leader_http(&status), expected, "{status}");
        }
    }
}
