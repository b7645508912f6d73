//! `POST /omni/agents/{agentId}/trigger`: one Omni message in, the agent's reply out.

use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::agent_backend::BackendRun;
use super::http_util::{self, Bearer, BodyError, HttpResponse};
use super::idempotency::{Claim, joined};
use super::omni_request::OmniTrigger;
use super::outcome::{Answer, Malformed, Outcome};
use super::prompt::{self, Prompt};
use super::{AgentRoute, RESET_TIMEOUT, RUN_DEADLINE_MARGIN, Service};

/// How a trigger was served, for the log line.
#[derive(Debug, Clone, Copy)]
enum Served {
    /// Answered without a run (validation, empty, too long).
    Direct,
    /// This request started the run.
    Run,
    /// A retry joined the run in flight.
    Joined,
    /// A retry got the cached answer.
    Cached,
}

impl Served {
    fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Run => "run",
            Self::Joined => "joined",
            Self::Cached => "cached",
        }
    }
}

/// The fields of the one completion log line.
#[derive(Default)]
struct LogFields {
    trace_id: Option<String>,
    instance_id: Option<String>,
    agent_id: Option<String>,
    session_key: Option<String>,
}

/// The idempotency key for a trace: stable, bounded, scoped by agent and instance.
pub fn idempotency_key(agent: &str, instance: &str, retry_key: &str) -> String {
    let digest = Sha256::digest(format!("{agent}\n{instance}\n{retry_key}").as_bytes());
    format!("omni-{}", &hex::encode(digest)[..32])
}

impl Service {
    /// Handles a trigger and writes its completion log line.
    pub(super) async fn trigger(&self, path_agent: &str, req: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        let mut fields = LogFields {
            agent_id: Some(path_agent.to_string()),
            ..LogFields::default()
        };
        let (answer, served) = self.trigger_inner(path_agent, req, &mut fields).await;
        let elapsed = started.elapsed();
        let status = answer.outcome.status();
        self.inner
            .metrics
            .trigger(answer.outcome, elapsed.as_secs_f64());
        tracing::info!(
            trace_id = fields.trace_id.as_deref().unwrap_or("-"),
            instance_id = fields.instance_id.as_deref().unwrap_or("-"),
            agent_id = fields.agent_id.as_deref().unwrap_or("-"),
            session_key = fields.session_key.as_deref().unwrap_or("-"),
            run_id = answer.run_id.as_deref().unwrap_or("-"),
            outcome = answer.outcome.as_str(),
            served = served.as_str(),
            status = status.as_u16(),
            duration_ms = elapsed.as_millis() as u64,
            ttfd_ms = answer.ttfd.map(|d| d.as_millis() as i64).unwrap_or(-1),
            error = answer.detail.as_deref().unwrap_or(""),
            "trigger done"
        );
        if status == StatusCode::OK {
            http_util::reply(answer.reply.as_deref())
        } else {
            http_util::error(
                status,
                answer.outcome.as_str(),
                answer.detail.as_deref().unwrap_or("request refused"),
            )
        }
    }

    async fn trigger_inner(
        &self,
        path_agent: &str,
        req: Request<Incoming>,
        fields: &mut LogFields,
    ) -> (Answer, Served) {
        let default_texts = &self.inner.default_texts;
        let refuse = |outcome: Outcome, detail: String| {
            (
                Answer::failed(outcome, default_texts, detail),
                Served::Direct,
            )
        };
        match http_util::bearer(req.headers(), &self.inner.inbound_token) {
            Bearer::Valid => {}
            Bearer::Missing => {
                return refuse(
                    Outcome::Unauthorized,
                    "missing Authorization: Bearer header".into(),
                );
            }
            Bearer::Invalid => return refuse(Outcome::Unauthorized, "wrong bearer token".into()),
        }
        if !http_util::is_json(req.headers()) {
            return refuse(
                Outcome::Invalid(Malformed::NotJson),
                "content-type must be application/json".into(),
            );
        }
        let body = match http_util::read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e @ BodyError::TooLarge) => {
                return refuse(Outcome::Invalid(Malformed::TooLarge), e.to_string());
            }
            Err(e) => return refuse(Outcome::Invalid(Malformed::Body), e.to_string()),
        };
        let trigger: OmniTrigger = match serde_json::from_slice(&body) {
            Ok(t) => t,
            Err(e) => {
                return refuse(
                    Outcome::Invalid(Malformed::Body),
                    format!("body is not the expected JSON: {e}"),
                );
            }
        };
        let who = match trigger.identify() {
            Ok(w) => w,
            Err(e) => return refuse(Outcome::Invalid(Malformed::Body), e.to_string()),
        };
        fields.trace_id.clone_from(&who.retry_key);
        fields.instance_id = Some(who.instance_id.clone());
        let Some(route) = self.route(path_agent, Some(&who.instance_id)).cloned() else {
            tracing::error!(
                agent_id = path_agent,
                "Omni sent a trigger for an agent this bridge does not serve: check the provider's baseUrl and the bridge's [agents]"
            );
            return refuse(
                Outcome::UnknownAgent,
                format!("agent {path_agent:?} is not configured on this bridge"),
            );
        };
        fields.agent_id = Some(route.name.clone());
        let key = match self.session_key_for(&route, &who.instance_id, &who.conversation) {
            Ok(k) => k,
            Err(e) => return refuse(Outcome::Invalid(Malformed::Body), e.to_string()),
        };
        fields.session_key = Some(key.as_str().to_string());
        let prompt = prompt::build(
            &trigger.content,
            &who,
            route.sender_prefix,
            &route.reset_command,
        );
        if let Prompt::Message(m) = &prompt {
            tracing::debug!(message = %m, session_key = %key, "message for the agent");
        }
        let job = match prompt {
            Prompt::Empty => return (Answer::of(Outcome::Empty, &route.texts), Served::Direct),
            Prompt::TooLong => return (Answer::of(Outcome::TooLong, &route.texts), Served::Direct),
            Prompt::Reset => Job::Reset,
            Prompt::Message(m) => Job::Run(m),
        };
        let retry_key = who
            .retry_key
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let idem = idempotency_key(&route.name, &who.instance_id, &retry_key);
        self.run_once(&route, key, idem, job).await
    }

    /// Starts the job for this idempotency key, or joins / replays the one already there.
    /// While shutting down, a retry still joins its run, but no new run starts.
    async fn run_once(
        &self,
        route: &AgentRoute,
        key: shared_protocol::SessionKey,
        idem: String,
        job: Job,
    ) -> (Answer, Served) {
        let wait_limit = route.run_budget + RUN_DEADLINE_MARGIN;
        let (rx, served) = match self.inner.traces.claim(&idem) {
            Claim::Cached(a) => {
                self.inner.metrics.retry(Served::Cached.as_str());
                return (a, Served::Cached);
            }
            Claim::Full => {
                let mut a = Answer::failed(
                    Outcome::Backpressure,
                    &route.texts,
                    "too many triggers in flight",
                );
                a.repeatable = true;
                return (a, Served::Direct);
            }
            Claim::Join(rx) => {
                self.inner.metrics.retry(Served::Joined.as_str());
                (rx, Served::Joined)
            }
            Claim::Lead(lease) if self.is_shutting_down() => {
                let mut a = Answer::failed(
                    Outcome::ShuttingDown,
                    &route.texts,
                    "the bridge is shutting down and starts no new run",
                );
                a.repeatable = true;
                lease.finish(a.clone(), false);
                return (a, Served::Direct);
            }
            Claim::Lead(lease) => {
                let rx = lease.subscribe();
                let backend = self.inner.backend.clone();
                let metrics = self.inner.metrics.clone();
                let texts = route.texts.clone();
                let gateway = route.gateway.clone();
                let budget = wait_limit;
                metrics.run_started();
                self.inner.runs.spawn(async move {
                    let answer = match job {
                        Job::Run(message) => {
                            let fut = backend.run(BackendRun {
                                gateway,
                                session_key: key,
                                message,
                                idempotency_key: idem,
                            });
                            match tokio::time::timeout(budget, fut).await {
                                Ok(result) => Answer::from_run(result, &texts),
                                Err(_) => Answer::failed(
                                    Outcome::Timeout,
                                    &texts,
                                    "no answer within the run budget",
                                ),
                            }
                        }
                        Job::Reset => {
                            let answer = reset_answer(backend.reset(&gateway, &key), &texts).await;
                            metrics.reset(answer.outcome == Outcome::Reset);
                            answer
                        }
                    };
                    metrics.run_finished();
                    let cache = !answer.repeatable;
                    lease.finish(answer, cache);
                });
                (rx, Served::Run)
            }
        };
        match tokio::time::timeout(wait_limit + Duration::from_secs(1), joined(rx)).await {
            Ok(Some(a)) => (a, served),
            Ok(None) | Err(_) => (
                Answer::failed(
                    Outcome::Timeout,
                    &route.texts,
                    "no answer within the run budget",
                ),
                served,
            ),
        }
    }
}

/// What a trigger asks the agent side to do.
enum Job {
    Run(String),
    Reset,
}

async fn reset_answer(
    fut: futures_util::future::BoxFuture<'static, Result<(), super::agent_backend::BackendError>>,
    texts: &super::texts::Texts,
) -> Answer {
    match tokio::time::timeout(RESET_TIMEOUT, fut).await {
        Ok(Ok(())) => Answer::of(Outcome::Reset, texts),
        Ok(Err(e)) => Answer::failed(Outcome::ResetFailed, texts, e.to_string()),
        Err(_) => Answer::failed(Outcome::ResetFailed, texts, "reset timed out"),
    }
}
