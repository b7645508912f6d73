//! `POST /omni/agents/{agentId}/trigger`: one Omni message in, the agent's reply out.
//!
//! The request task does the whole job itself: checks and decodes the body, builds the session
//! key and the prompt, answers a repeated delivery from the cache of finished answers, and
//! otherwise starts the run (or joins the run in flight with the same trace) in the gateway
//! layer and waits for it. The run has its own task there, so it goes on for a retry if Omni
//! hangs up; its deadlines are the gateway's, so this side adds none.

use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::agent_backend::Started;
use super::http_util::{self, Bearer, BodyError, HttpResponse};
use super::omni_request::OmniTrigger;
use super::outcome::{Answer, Malformed, Outcome};
use super::prompt::{self, Prompt};
use super::{AgentRoute, RESET_TIMEOUT, Service};
use crate::error::Error;
use crate::gateway::RunRequest;

/// How a trigger was served, for the log line.
#[derive(Debug, Clone, Copy)]
enum Served {
    /// Answered without a run (validation, empty, too long).
    Direct,
    /// This request started the run (or the reset).
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
    route: Option<Arc<AgentRoute>>,
    session_key: Option<shared_protocol::SessionKey>,
}

/// The idempotency key for a trace: stable, bounded, scoped by agent and instance. It is the
/// run's id at the gateway, and the key of the join and of the answer cache.
pub fn idempotency_key(agent: &str, instance: &str, retry_key: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [agent, "\n", instance, "\n", retry_key] {
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut key = String::with_capacity(5 + 32);
    key.push_str("omni-");
    key.push_str(&hex::encode(&digest[..16]));
    key
}

impl Service {
    /// Handles a trigger and writes its completion log line.
    pub(super) async fn trigger(&self, path_agent: &str, req: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        let mut fields = LogFields::default();
        let (answer, served) = self.trigger_inner(path_agent, req, &mut fields).await;
        let elapsed = started.elapsed();
        let status = answer.outcome.status();
        self.inner
            .metrics
            .trigger(answer.outcome, elapsed.as_secs_f64());
        tracing::info!(
            trace_id = fields.trace_id.as_deref().unwrap_or("-"),
            instance_id = fields.instance_id.as_deref().unwrap_or("-"),
            agent_id = fields
                .route
                .as_deref()
                .map_or(path_agent, |r| r.name.as_str()),
            session_key = fields.session_key.as_ref().map_or("-", |k| k.as_str()),
            run_id = answer.run_id.as_deref().unwrap_or("-"),
            outcome = answer.outcome.as_str(),
            served = served.as_str(),
            status = status.as_u16(),
            duration_ms = elapsed.as_millis() as u64,
            ttfd_ms = answer.ttfd.map(|d| d.as_millis() as i64).unwrap_or(-1),
            side = answer.side.map_or("-", |s| s.as_str()),
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
                Answer::refused(outcome, default_texts, detail),
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
        let Some(route) = self.route(path_agent, Some(&who.instance_id)) else {
            tracing::error!(
                agent_id = path_agent,
                "Omni sent a trigger for an agent this bridge does not serve: check the provider's baseUrl and the bridge's [agents]"
            );
            return refuse(
                Outcome::UnknownAgent,
                format!("agent {path_agent:?} is not configured on this bridge"),
            );
        };
        fields.route = Some(route.clone());
        let key = match self.session_key_for(&route, &who.instance_id, &who.conversation) {
            Ok(k) => k,
            Err(e) => return refuse(Outcome::Invalid(Malformed::Body), e.to_string()),
        };
        fields.session_key = Some(key.clone());
        let prompt = prompt::build(
            &trigger.content,
            &who,
            route.sender_prefix,
            &route.reset_command,
        );
        if let Prompt::Message(m) = &prompt {
            tracing::debug!(message = %m, session_key = %key, "message for the agent");
        }
        let message = match prompt {
            Prompt::Empty => return (Answer::of(Outcome::Empty, &route.texts), Served::Direct),
            Prompt::TooLong => return (Answer::of(Outcome::TooLong, &route.texts), Served::Direct),
            Prompt::Reset => None,
            Prompt::Message(m) => Some(m),
        };
        let retry_key = who
            .retry_key
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let idem = idempotency_key(&route.name, &who.instance_id, &retry_key);
        if let Some(answer) = self.inner.answers.get(&idem) {
            self.inner.metrics.retry(Served::Cached.as_str());
            return (answer, Served::Cached);
        }
        let (answer, served) = match message {
            Some(message) => {
                let request = RunRequest {
                    session_key: key,
                    message,
                    idempotency_key: idem.clone(),
                };
                self.run(&route, request).await
            }
            None => (self.reset(&route, &key).await, Served::Run),
        };
        if !answer.retryable {
            self.inner.answers.insert(&idem, answer.clone());
        }
        (answer, served)
    }

    /// Starts the run (or joins the one in flight with its idempotency key) and waits for it.
    /// While shutting down, a retry still joins its run, but no new run starts.
    async fn run(&self, route: &AgentRoute, request: RunRequest) -> (Answer, Served) {
        let backend = &self.inner.backend;
        let _draining = self.inner.runs.token();
        let started = if self.is_shutting_down() {
            match backend.attach(&route.gateway, &request.idempotency_key) {
                Some(reply) => Started {
                    joined: true,
                    reply,
                },
                None => {
                    let answer = Answer::from_run(Err(Error::ShuttingDown), &route.texts);
                    return (answer, Served::Direct);
                }
            }
        } else {
            backend.run(&route.gateway, request)
        };
        let served = if started.joined {
            self.inner.metrics.retry(Served::Joined.as_str());
            Served::Joined
        } else {
            Served::Run
        };
        (Answer::from_run(started.reply.await, &route.texts), served)
    }

    /// Clears the conversation (the reset command).
    async fn reset(&self, route: &AgentRoute, key: &shared_protocol::SessionKey) -> Answer {
        if self.is_shutting_down() {
            return Answer::from_run(Err(Error::ShuttingDown), &route.texts);
        }
        let _draining = self.inner.runs.token();
        let result =
            tokio::time::timeout(RESET_TIMEOUT, self.inner.backend.reset(&route.gateway, key))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Unavailable {
                        message: format!("the reset did not finish within {RESET_TIMEOUT:?}"),
                        retry_after: None,
                    })
                });
        let answer = match result {
            Ok(()) => Answer::of(Outcome::Reset, &route.texts),
            Err(e) => Answer::failed(Outcome::ResetFailed(e.kind()), &e, &route.texts),
        };
        self.inner.metrics.reset(answer.outcome == Outcome::Reset);
        answer
    }
}
