//! Model clients: Anthropic's Messages API (the primary provider) and an OpenAI-compatible
//! chat-completions API (fallback and self-hosted models), behind one trait so the loop runs
//! against either; and the fallback between them.

pub mod anthropic;
pub mod openai;
pub mod retry;
pub mod sse;
pub mod types;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::retry::{Attempt, GaveUp};

pub use crate::retry::RetryPolicy;
pub use types::{ClientTool, ContentBlock, Message, ModelRequest, ModelResponse, Role, StopKind};

/// Why a model call failed. No variant ever holds an API key.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The API answered with an error status and (usually) an error body.
    #[error("{provider} API returned HTTP {status} {error_type}: {message}{}", request_suffix(.request_id))]
    Api {
        provider: &'static str,
        status: u16,
        error_type: String,
        message: String,
        request_id: Option<String>,
    },
    /// An `error` event in the middle of a stream (e.g. overloaded_error).
    #[error("{provider} stream carried an error event {error_type}: {message}")]
    StreamError {
        provider: &'static str,
        error_type: String,
        message: String,
    },
    /// Connect, timeout, or a stream that ended early.
    #[error("could not complete the call to the {provider} API: {message}")]
    Connection {
        provider: &'static str,
        message: String,
    },
    /// A response that does not follow the wire format.
    #[error("unexpected response from the {provider} API: {message}")]
    Protocol {
        provider: &'static str,
        message: String,
    },
    #[error("invalid {provider} client settings: {message}")]
    Config {
        provider: &'static str,
        message: String,
    },
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: Box<LlmError> },
}

fn request_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default()
}

impl LlmError {
    /// Transient failures worth another attempt.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Api { status, .. } => retry::retryable_status(*status),
            LlmError::StreamError { error_type, .. } => matches!(
                error_type.as_str(),
                "overloaded_error" | "api_error" | "rate_limit_error"
            ),
            LlmError::Connection { .. } => true,
            LlmError::Protocol { .. } | LlmError::Config { .. } => false,
            LlmError::Exhausted { .. } => false,
        }
    }

    /// The provider is down or overloaded (after its retries): a reason to fall back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            LlmError::Exhausted { last, .. } => last.is_retryable(),
            other => other.is_retryable(),
        }
    }
}

/// One failed attempt, with what the server said about retrying.
pub(crate) struct AttemptFailure {
    pub error: LlmError,
    pub server_delay: Option<Duration>,
    pub should_retry: Option<bool>,
}

impl From<LlmError> for AttemptFailure {
    fn from(error: LlmError) -> Self {
        AttemptFailure {
            error,
            server_delay: None,
            should_retry: None,
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's attempts are used up.
/// The HTTP client of a model provider: the whole-request limit, and 30 s to connect.
pub(crate) fn http_client(
    provider: &'static str,
    request_timeout: std::time::Duration,
) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| LlmError::Config {
            provider,
            message: e.to_string(),
        })
}

pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    mut attempt: F,
) -> Result<T, LlmError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AttemptFailure>>,
{
    let tried = crate::retry::with_retries(policy, "model", |_| {
        let next = attempt();
        async move {
            match next.await {
                Ok(v) => Attempt::Done(v),
                Err(f) if f.should_retry.unwrap_or_else(|| f.error.is_retryable()) => {
                    Attempt::Retry {
                        error: f.error,
                        hint: f.server_delay,
                    }
                }
                Err(f) => Attempt::Failed(f.error),
            }
        }
    })
    .await;
    if let Some(m) = crate::metrics::global() {
        m.model_call(tried.attempts > 1);
    }
    let attempts = tried.attempts;
    tried.result.map_err(|gave_up| match gave_up {
        GaveUp::Final(e) => e,
        GaveUp::OutOfAttempts(last) | GaveUp::WaitTooLong { error: last, .. } => {
            LlmError::Exhausted {
                attempts,
                last: Box::new(last),
            }
        }
    })
}

/// A model the loop can talk to.
#[async_trait]
pub trait ModelProvider: Send + Sync {
    /// A short name for logs and events ("anthropic", "openai").
    fn name(&self) -> &str;
    /// The configured model id.
    fn model(&self) -> &str;
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, LlmError>;
}

/// Uses `primary` until it is unavailable (overloaded, 5xx or unreachable after its retries),
/// then `fallback` for that call and the rest of the run.
pub struct FallbackProvider {
    primary: Arc<dyn ModelProvider>,
    fallback: Arc<dyn ModelProvider>,
    switched: AtomicBool,
}

impl FallbackProvider {
    pub fn new(primary: Arc<dyn ModelProvider>, fallback: Arc<dyn ModelProvider>) -> Self {
        FallbackProvider {
            primary,
            fallback,
            switched: AtomicBool::new(false),
        }
    }

    fn current(&self) -> &Arc<dyn ModelProvider> {
        if self.switched.load(Ordering::Relaxed) {
            &self.fallback
        } else {
            &self.primary
        }
    }
}

#[async_trait]
impl ModelProvider for FallbackProvider {
    fn name(&self) -> &str {
        self.current().name()
    }

    fn model(&self) -> &str {
        self.current().model()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, LlmError> {
        if self.switched.load(Ordering::Relaxed) {
            return self.fallback.complete(request).await;
        }
        match self.primary.complete(request).await {
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, primary = self.primary.name(), fallback = self.fallback.name(), "falling back to the second provider");
                self.switched.store(true, Ordering::Relaxed);
                self.fallback.complete(request).await
            }
            other => other,
        }
    }
}

/// Which provider runs, and whether the other one takes over when it is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderChoice {
    /// Anthropic only.
    #[default]
    Anthropic,
    /// The OpenAI-compatible provider only.
    OpenAi,
    /// Anthropic, falling back to the OpenAI-compatible provider when Anthropic is unavailable.
    AnthropicThenOpenAi,
}

/// Builds the provider a run uses from the configured clients.
pub fn build_provider(
    choice: ProviderChoice,
    anthropic: Option<anthropic::AnthropicConfig>,
    openai: Option<openai::OpenAiConfig>,
) -> Result<Arc<dyn ModelProvider>, LlmError> {
    let need = |provider: &'static str| LlmError::Config {
        provider,
        message: "this provider is selected but not configured (base URL and key)".into(),
    };
    match choice {
        ProviderChoice::Anthropic => Ok(Arc::new(anthropic::AnthropicClient::new(
            anthropic.ok_or_else(|| need("Anthropic"))?,
        )?)),
        ProviderChoice::OpenAi => Ok(Arc::new(openai::OpenAiClient::new(
            openai.ok_or_else(|| need("OpenAI-compatible"))?,
        )?)),
        ProviderChoice::AnthropicThenOpenAi => {
            let a = anthropic::AnthropicClient::new(anthropic.ok_or_else(|| need("Anthropic"))?)?;
            match openai {
                Some(o) => Ok(Arc::new(FallbackProvider::new(
                    Arc::new(a),
                    Arc::new(openai::OpenAiClient::new(o)?),
                ))),
                None => Ok(Arc::new(a)),
            }
        }
    }
}

/// Everything needed to build a run's provider, named after the environment of DESIGN §3
/// (`ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`, `BACKSPACE_MODEL`, `OPENAI_BASE_URL`,
/// `OPENAI_API_KEY`). `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// `None`: Anthropic when its key is set (falling back to the OpenAI-compatible provider
    /// when that is configured too), else the OpenAI-compatible provider alone.
    pub choice: Option<ProviderChoice>,
    pub anthropic_base_url: url::Url,
    pub anthropic_api_key: Option<secrecy::SecretString>,
    /// The Claude model.
    pub model: String,
    pub openai_base_url: Option<url::Url>,
    pub openai_api_key: Option<secrecy::SecretString>,
    /// The model for the OpenAI-compatible provider; `model` when unset.
    pub openai_model: Option<String>,
    pub retry: RetryPolicy,
    pub stream: bool,
}

impl ProviderSettings {
    pub fn new(
        anthropic_base_url: url::Url,
        anthropic_api_key: Option<secrecy::SecretString>,
        model: impl Into<String>,
    ) -> Self {
        ProviderSettings {
            choice: None,
            anthropic_base_url,
            anthropic_api_key,
            model: model.into(),
            openai_base_url: None,
            openai_api_key: None,
            openai_model: None,
            retry: RetryPolicy::model(),
            stream: true,
        }
    }

    pub fn effective_choice(&self) -> ProviderChoice {
        self.choice.unwrap_or(
            match (
                self.anthropic_api_key.is_some(),
                self.openai_base_url.is_some(),
            ) {
                (true, true) => ProviderChoice::AnthropicThenOpenAi,
                (false, true) => ProviderChoice::OpenAi,
                _ => ProviderChoice::Anthropic,
            },
        )
    }

    pub fn build(&self) -> Result<Arc<dyn ModelProvider>, LlmError> {
        let anthropic = self.anthropic_api_key.clone().map(|key| {
            let mut c = anthropic::AnthropicConfig::new(
                self.anthropic_base_url.clone(),
                key,
                self.model.clone(),
            );
            c.retry = self.retry.clone();
            c.stream = self.stream;
            c
        });
        let openai = self.openai_base_url.clone().map(|base| {
            let mut c = openai::OpenAiConfig::new(
                base,
                self.openai_api_key.clone(),
                self.openai_model
                    .clone()
                    .unwrap_or_else(|| self.model.clone()),
            );
            c.retry = self.retry.clone();
            c
        });
        build_provider(self.effective_choice(), anthropic, openai)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_status_and_type_and_classify_for_retry_and_fallback() {
        let e = LlmError::Api {
            provider: "Anthropic",
            status: 529,
            error_type: "overloaded_error".into(),
            message: "Overloaded".into(),
            request_id: Some("req_1".into()),
        };
        assert_eq!(
            e.to_string(),
            "Anthropic API returned HTTP 529 overloaded_error: Overloaded (request id req_1)"
        );
        assert!(e.is_retryable());
        let gave_up = LlmError::Exhausted {
            attempts: 3,
            last: Box::new(e),
        };
        assert!(!gave_up.is_retryable());
        assert!(gave_up.is_unavailable());
        let bad = LlmError::Api {
            provider: "Anthropic",
            status: 400,
            error_type: "invalid_request_error".into(),
            message: "no".into(),
            request_id: None,
        };
        assert!(!bad.is_unavailable());
    }

    #[test]
    fn provider_choice_follows_what_is_configured() {
        let base = url::Url::parse("https://api.anthropic.com").unwrap();
        let key = || Some(secrecy::SecretString::from("k".to_owned()));
        let mut s = ProviderSettings::new(base.clone(), key(), "claude-sonnet-4-5");
        assert_eq!(s.effective_choice(), ProviderChoice::Anthropic);
        assert_eq!(s.build().unwrap().name(), "anthropic");
        s.openai_base_url = Some(url::Url::parse("http://localhost:8000").unwrap());
        assert_eq!(s.effective_choice(), ProviderChoice::AnthropicThenOpenAi);
        assert_eq!(s.build().unwrap().name(), "anthropic");
        s.anthropic_api_key = None;
        assert_eq!(s.effective_choice(), ProviderChoice::OpenAi);
        assert_eq!(s.build().unwrap().name(), "openai");
        let none = ProviderSettings::new(base, None, "m");
        let err = none.build().err().expect("no key, no provider");
        assert!(err.to_string().contains("not configured"), "{err}");
        assert!(!format!("{s:?}").contains("\"k\""));
    }

    #[tokio::test]
    async fn retries_stop_at_the_attempt_bound_with_the_last_error() {
        let mut calls = 0;
        let r: Result<(), LlmError> = with_retries(&RetryPolicy::fast(), || {
            calls += 1;
            async {
                Err(AttemptFailure::from(LlmError::Connection {
                    provider: "Anthropic",
                    message: "refused".into(),
                }))
            }
        })
        .await;
        assert_eq!(calls, 4);
        assert!(matches!(r, Err(LlmError::Exhausted { attempts: 4, .. })));
    }
}
