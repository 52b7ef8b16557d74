//! The Anthropic Messages API client: `POST {base}/v1/messages` with `x-api-key` and
//! `anthropic-version`, streaming or not, with retries; and the request body, including the
//! prompt-cache breakpoints (tools, system, and the two newest user turns).

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use super::retry::{server_delay, should_retry_header};
use super::sse::{read_stream, ErrorBody};
use super::types::{ContentBlock, Message, ModelRequest, ModelResponse, Role, StopKind, WireUsage};
use super::RetryPolicy;
use super::{with_retries, AttemptFailure, LlmError, ModelProvider};

const PROVIDER: &str = "Anthropic";
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API accepts at most this many `cache_control` breakpoints per request.
pub const MAX_CACHE_BREAKPOINTS: usize = 4;

/// How to reach Anthropic. `Debug` never shows the key.
#[derive(Clone)]
pub struct AnthropicConfig {
    pub base_url: Url,
    pub api_key: SecretString,
    pub model: String,
    /// Stream responses (SSE). Long generations need it to avoid idle-connection timeouts.
    pub stream: bool,
    pub retry: RetryPolicy,
    /// Put `cache_control` breakpoints on tools, system and conversation.
    pub prompt_caching: bool,
}

impl AnthropicConfig {
    pub fn new(base_url: Url, api_key: SecretString, model: impl Into<String>) -> Self {
        AnthropicConfig {
            base_url,
            api_key,
            model: model.into(),
            stream: true,
            retry: RetryPolicy::model(),
            prompt_caching: true,
        }
    }
}

impl std::fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &"[redacted]")
            .field("model", &self.model)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

pub struct AnthropicClient {
    http: reqwest::Client,
    endpoint: String,
    config: AnthropicConfig,
}

impl AnthropicClient {
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        let http = super::http_client(PROVIDER, config.retry.request_timeout)?;
        let endpoint = format!(
            "{}/v1/messages",
            config.base_url.as_str().trim_end_matches('/')
        );
        Ok(AnthropicClient {
            http,
            endpoint,
            config,
        })
    }

    fn headers(&self) -> Result<HeaderMap, LlmError> {
        let mut h = HeaderMap::new();
        let mut key = HeaderValue::from_str(self.config.api_key.expose_secret()).map_err(|_| {
            LlmError::Config {
                provider: PROVIDER,
                message: "ANTHROPIC_API_KEY holds characters not allowed in a header".into(),
            }
        })?;
        key.set_sensitive(true);
        h.insert("x-api-key", key);
        h.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(h)
    }

    /// Sends one request body (already built) and reads the reply, with retries.
    pub async fn send_body(&self, body: &Value) -> Result<ModelResponse, LlmError> {
        let headers = self.headers()?;
        let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
        with_retries(&self.config.retry, || self.attempt(&headers, body, stream)).await
    }

    async fn attempt(
        &self,
        headers: &HeaderMap,
        body: &Value,
        stream: bool,
    ) -> Result<ModelResponse, AttemptFailure> {
        let resp = self
            .http
            .post(&self.endpoint)
            .headers(headers.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| connection(&e))?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let delay = server_delay(resp.headers());
            let should_retry = should_retry_header(resp.headers());
            let request_id = resp
                .headers()
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = resp.text().await.unwrap_or_default();
            return Err(AttemptFailure {
                error: api_error(status, &text, request_id),
                server_delay: delay,
                should_retry,
            });
        }
        if stream {
            Ok(read_stream(resp.bytes_stream()).await?)
        } else {
            let bytes = resp.bytes().await.map_err(|e| connection(&e))?;
            Ok(parse_message(&bytes)?)
        }
    }
}

fn connection(e: &reqwest::Error) -> AttemptFailure {
    // `without_url` is not needed for secrecy (the key is a header), but keeps messages short.
    AttemptFailure::from(LlmError::Connection {
        provider: PROVIDER,
        message: format!("{}", DisplayChain(e)),
    })
}

/// An error and its sources on one line.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
    #[serde(default)]
    request_id: Option<String>,
}

/// An error status and body as `LlmError::Api`, with Anthropic's error type and message when the
/// body is theirs.
pub fn api_error(status: u16, body: &str, header_request_id: Option<String>) -> LlmError {
    match serde_json::from_str::<ErrorEnvelope>(body) {
        Ok(env) => LlmError::Api {
            provider: PROVIDER,
            status,
            error_type: env.error.error_type,
            message: env.error.message,
            request_id: env.request_id.or(header_request_id),
        },
        Err(_) => LlmError::Api {
            provider: PROVIDER,
            status,
            error_type: "http_error".into(),
            message: body.chars().take(300).collect(),
            request_id: header_request_id,
        },
    }
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

/// Parses a non-streaming Messages API response.
pub fn parse_message(bytes: &[u8]) -> Result<ModelResponse, LlmError> {
    let m: WireMessage = serde_json::from_slice(bytes).map_err(|e| LlmError::Protocol {
        provider: PROVIDER,
        message: format!("undecodable message ({e})"),
    })?;
    let mut usage = Default::default();
    m.usage.apply_to(&mut usage);
    Ok(ModelResponse {
        id: m.id,
        model: m.model,
        content: m
            .content
            .into_iter()
            .filter(|b| *b != ContentBlock::Other)
            .collect(),
        stop: StopKind::from_wire(m.stop_reason.as_deref().unwrap_or("end_turn")),
        usage,
        incomplete_tool_inputs: Vec::new(),
    })
}

/// The JSON body of a Messages API request. With `caching`, `cache_control` breakpoints go on
/// the last tool, the system prompt, and the last block of the two newest user turns: the
/// newest writes the conversation so far to the cache, the one before reads what the previous
/// request wrote (so each request shares a cached prefix with the one before it). Four in all,
/// the API's maximum.
pub fn request_body(model: &str, req: &ModelRequest, stream: bool, caching: bool) -> Value {
    let ephemeral = json!({"type": "ephemeral"});
    let mut tools: Vec<Value> = req.tools.iter().map(|t| t.anthropic_definition()).collect();
    let mut system = vec![json!({"type": "text", "text": req.system})];
    let mut messages: Vec<Value> = req.messages.iter().map(message_json).collect();
    if caching {
        if let Some(Value::Object(last)) = tools.last_mut() {
            last.insert("cache_control".into(), ephemeral.clone());
        }
        if let Some(Value::Object(s)) = system.last_mut() {
            s.insert("cache_control".into(), ephemeral.clone());
        }
        let user_turns: Vec<usize> = req
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == Role::User)
            .map(|(i, _)| i)
            .rev()
            .take(2)
            .collect();
        for i in user_turns {
            if let Some(Value::Object(block)) = messages[i]
                .get_mut("content")
                .and_then(Value::as_array_mut)
                .and_then(|c| c.last_mut())
            {
                block.insert("cache_control".into(), ephemeral.clone());
            }
        }
    }
    let mut body = json!({
        "model": model,
        "max_tokens": req.max_tokens,
        "system": system,
        "messages": messages,
    });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    if stream {
        body["stream"] = Value::Bool(true);
    }
    body
}

fn message_json(m: &Message) -> Value {
    // Serialising our own types cannot fail; Null would be rejected by the API if it ever did.
    serde_json::to_value(m).unwrap_or(Value::Null)
}

/// Counts `cache_control` markers anywhere in a request body.
pub fn count_cache_breakpoints(body: &Value) -> usize {
    match body {
        Value::Object(m) => {
            usize::from(m.contains_key("cache_control"))
                + m.values().map(count_cache_breakpoints).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_cache_breakpoints).sum(),
        _ => 0,
    }
}

#[async_trait]
impl ModelProvider for AnthropicClient {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, LlmError> {
        let body = request_body(
            &self.config.model,
            request,
            self.config.stream,
            self.config.prompt_caching,
        );
        self.send_body(&body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::llm::types::ClientTool;

    fn conversation(turns: usize) -> ModelRequest {
        let mut messages = vec![Message::user_text("do it")];
        for i in 0..turns {
            messages.push(Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse {
                    id: format!("t{i}"),
                    name: "bash".into(),
                    input: json!({"command": "ls"}),
                }],
            });
            messages.push(Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: format!("t{i}"),
                    content: "out".into(),
                    is_error: false,
                }],
            });
        }
        ModelRequest {
            system: "sys".into(),
            messages,
            max_tokens: 100,
            tools: ClientTool::ALL.to_vec(),
        }
    }

    #[test]
    fn breakpoints_sit_on_last_tool_system_and_two_newest_user_turns() {
        let body = request_body("m", &conversation(3), true, true);
        assert_eq!(count_cache_breakpoints(&body), MAX_CACHE_BREAKPOINTS);
        assert!(body["tools"][1]["cache_control"].is_object());
        assert!(body["tools"][0].get("cache_control").is_none());
        assert!(body["system"][0]["cache_control"].is_object());
        assert!(body["messages"][6]["content"][0]["cache_control"].is_object());
        assert!(body["messages"][4]["content"][0]["cache_control"].is_object());
        assert!(body["messages"][2]["content"][0]
            .get("cache_control")
            .is_none());
        assert_eq!(body["stream"], true);
        assert_eq!(body["tools"][0]["type"], "bash_20250124");

        let first = request_body("m", &conversation(0), false, true);
        assert_eq!(count_cache_breakpoints(&first), 3);
        assert!(first.get("stream").is_none());
        let off = request_body("m", &conversation(3), false, false);
        assert_eq!(count_cache_breakpoints(&off), 0);
    }

    #[test]
    fn error_bodies_keep_type_message_and_request_id() {
        let e = api_error(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"},"request_id":"req_9"}"#,
            None,
        );
        assert_eq!(
            e.to_string(),
            "Anthropic API returned HTTP 400 invalid_request_error: bad (request id req_9)"
        );
        let e = api_error(502, "<html>bad gateway</html>", Some("r".into()));
        assert!(e.to_string().contains("502 http_error"));
    }

    #[test]
    fn debug_of_the_config_hides_the_key() {
        let c = AnthropicConfig::new(
            Url::parse("http://x").unwrap(),
            SecretString::from("sk-ant-secret".to_owned()),
            "m",
        );
        assert!(!format!("{c:?}").contains("sk-ant-secret"));
    }
}
