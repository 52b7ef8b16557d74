//! An OpenAI-compatible chat-completions client (OpenAI, vLLM, llama.cpp, Ollama...): the same two
//! tools as JSON-schema function tools, tool calls and tool messages mapped to and from the
//! neutral conversation. Non-streaming.
//!
//! `OPENAI_BASE_URL` may be given with or without `/v1`: a base whose path is empty or `/` gets
//! `/v1/chat/completions`, any other path gets `/chat/completions` (so `https://api.openai.com/v1`
//! and `http://localhost:8000` both work; a proxy at `https://host/openai/v1` works too).

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use super::retry::{server_delay, should_retry_header};
use super::types::{ContentBlock, ModelRequest, ModelResponse, Role, StopKind};
use super::RetryPolicy;
use super::{with_retries, AttemptFailure, LlmError, ModelProvider};
use crate::run_event::Usage;

const PROVIDER: &str = "OpenAI-compatible";

#[derive(Clone)]
pub struct OpenAiConfig {
    pub base_url: Url,
    pub api_key: Option<SecretString>,
    pub model: String,
    pub retry: RetryPolicy,
}

impl OpenAiConfig {
    pub fn new(base_url: Url, api_key: Option<SecretString>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url,
            api_key,
            model: model.into(),
            retry: RetryPolicy::model(),
        }
    }
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// `{base}/chat/completions`, adding `/v1` to a bare host.
pub fn chat_completions_url(base: &Url) -> String {
    let s = base.as_str().trim_end_matches('/');
    if base.path().trim_matches('/').is_empty() {
        format!("{s}/v1/chat/completions")
    } else {
        format!("{s}/chat/completions")
    }
}

pub struct OpenAiClient {
    http: reqwest::Client,
    endpoint: String,
    config: OpenAiConfig,
}

impl OpenAiClient {
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        let http = super::http_client(PROVIDER, config.retry.request_timeout)?;
        Ok(OpenAiClient {
            http,
            endpoint: chat_completions_url(&config.base_url),
            config,
        })
    }

    fn headers(&self) -> Result<HeaderMap, LlmError> {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &self.config.api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(
                |_| LlmError::Config {
                    provider: PROVIDER,
                    message: "OPENAI_API_KEY holds characters not allowed in a header".into(),
                },
            )?;
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
        Ok(h)
    }

    async fn attempt(
        &self,
        headers: &HeaderMap,
        body: &Value,
    ) -> Result<ModelResponse, AttemptFailure> {
        let resp = self
            .http
            .post(&self.endpoint)
            .headers(headers.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| {
                AttemptFailure::from(LlmError::Connection {
                    provider: PROVIDER,
                    message: e.without_url().to_string(),
                })
            })?;
        let status = resp.status().as_u16();
        let delay = server_delay(resp.headers());
        let should_retry = should_retry_header(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| {
            AttemptFailure::from(LlmError::Connection {
                provider: PROVIDER,
                message: e.without_url().to_string(),
            })
        })?;
        if !(200..300).contains(&status) {
            return Err(AttemptFailure {
                error: api_error(status, &bytes),
                server_delay: delay,
                should_retry,
            });
        }
        Ok(parse_completion(&bytes)?)
    }
}

fn api_error(status: u16, body: &[u8]) -> LlmError {
    #[derive(Deserialize)]
    struct Env {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        message: String,
        #[serde(rename = "type", default)]
        error_type: Option<String>,
    }
    match serde_json::from_slice::<Env>(body) {
        Ok(env) => LlmError::Api {
            provider: PROVIDER,
            status,
            error_type: env.error.error_type.unwrap_or_else(|| "error".into()),
            message: env.error.message,
            request_id: None,
        },
        Err(_) => LlmError::Api {
            provider: PROVIDER,
            status,
            error_type: "http_error".into(),
            message: String::from_utf8_lossy(body).chars().take(300).collect(),
            request_id: None,
        },
    }
}

/// The chat-completions body for a neutral request: system message first, assistant tool_use
/// blocks as `tool_calls`, tool_result blocks as `tool` messages.
pub fn request_body(model: &str, req: &ModelRequest) -> Value {
    let mut messages = vec![json!({"role": "system", "content": req.system})];
    for m in &req.messages {
        match m.role {
            Role::Assistant => {
                let text = m.text();
                let calls: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::ToolUse { id, name, input } => Some(json!({
                            "id": id, "type": "function",
                            "function": {"name": name, "arguments": input.to_string()}
                        })),
                        _ => None,
                    })
                    .collect();
                let mut msg = json!({
                    "role": "assistant",
                    "content": if text.is_empty() { Value::Null } else { Value::String(text) },
                });
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            Role::User => {
                let mut texts = Vec::new();
                for b in &m.content {
                    match b {
                        ContentBlock::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                        } => {
                            let content = if *is_error {
                                format!("Error: {content}")
                            } else {
                                content.clone()
                            };
                            messages.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}));
                        }
                        ContentBlock::Text { text } => texts.push(text.as_str()),
                        _ => {}
                    }
                }
                if !texts.is_empty() {
                    messages.push(json!({"role": "user", "content": texts.join("\n\n")}));
                }
            }
        }
    }
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": req.max_tokens,
    });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                let (description, parameters) = t.function_schema();
                json!({"type": "function", "function": {
                    "name": t.name(), "description": description, "parameters": parameters
                }})
            })
            .collect();
    }
    body
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Deserialize)]
struct ToolCall {
    id: String,
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

/// Parses a chat-completions response into the neutral form.
pub fn parse_completion(bytes: &[u8]) -> Result<ModelResponse, LlmError> {
    let c: Completion = serde_json::from_slice(bytes).map_err(|e| LlmError::Protocol {
        provider: PROVIDER,
        message: format!("undecodable completion ({e})"),
    })?;
    let choice = c
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Protocol {
            provider: PROVIDER,
            message: "the completion has no choices".into(),
        })?;
    let mut content = Vec::new();
    if let Some(text) = choice.message.content.filter(|t| !t.trim().is_empty()) {
        content.push(ContentBlock::Text { text });
    }
    let mut incomplete = Vec::new();
    for call in choice.message.tool_calls {
        let input = if call.function.arguments.trim().is_empty() {
            Some(json!({}))
        } else {
            serde_json::from_str::<Value>(&call.function.arguments)
                .ok()
                .filter(Value::is_object)
        };
        let input = input.unwrap_or_else(|| {
            incomplete.push(call.id.clone());
            json!({})
        });
        content.push(ContentBlock::ToolUse {
            id: call.id,
            name: call.function.name,
            input,
        });
    }
    let has_calls = content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse { .. }));
    let stop = match choice.finish_reason.as_deref() {
        Some("length") => StopKind::MaxTokens,
        Some("tool_calls") | Some("function_call") => StopKind::ToolUse,
        _ if has_calls => StopKind::ToolUse,
        Some("content_filter") => StopKind::Refusal,
        _ => StopKind::EndTurn,
    };
    let u = c.usage.unwrap_or_default();
    let cached = u
        .prompt_tokens_details
        .map(|d| d.cached_tokens)
        .unwrap_or(0)
        .min(u.prompt_tokens);
    Ok(ModelResponse {
        id: c.id,
        model: c.model,
        content,
        stop,
        usage: Usage {
            input_tokens: u.prompt_tokens - cached,
            output_tokens: u.completion_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
        },
        incomplete_tool_inputs: incomplete,
    })
}

#[async_trait]
impl ModelProvider for OpenAiClient {
    fn name(&self) -> &str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, LlmError> {
        let headers = self.headers()?;
        let body = request_body(&self.config.model, request);
        with_retries(&self.config.retry, || self.attempt(&headers, &body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::llm::types::{ClientTool, Message};

    #[test]
    fn base_urls_with_and_without_v1_reach_chat_completions() {
        let u = |s: &str| chat_completions_url(&Url::parse(s).unwrap());
        assert_eq!(
            u("https://api.openai.com/v1"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            u("https://api.openai.com/v1/"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            u("http://localhost:8000"),
            "http://localhost:8000/v1/chat/completions"
        );
        assert_eq!(
            u("https://h/proxy/v1"),
            "https://h/proxy/v1/chat/completions"
        );
    }

    #[test]
    fn tool_use_and_results_map_to_tool_calls_and_tool_messages() {
        let req = ModelRequest {
            system: "sys".into(),
            messages: vec![
                Message::user_text("hi"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::text("looking"),
                        ContentBlock::ToolUse {
                            id: "c1".into(),
                            name: "bash".into(),
                            input: json!({"command": "ls"}),
                        },
                    ],
                },
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "c1".into(),
                        content: "a.txt".into(),
                        is_error: true,
                    }],
                },
            ],
            max_tokens: 50,
            tools: ClientTool::ALL.to_vec(),
        };
        let b = request_body("gpt", &req);
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m[0]["role"], "system");
        assert_eq!(m[1], json!({"role": "user", "content": "hi"}));
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"command\":\"ls\"}"
        );
        assert_eq!(m[2]["content"], "looking");
        assert_eq!(m[3]["role"], "tool");
        assert_eq!(m[3]["tool_call_id"], "c1");
        assert_eq!(m[3]["content"], "Error: a.txt");
        assert_eq!(
            b["tools"][1]["function"]["name"],
            "str_replace_based_edit_tool"
        );
    }

    #[test]
    fn completions_map_to_tool_use_and_cached_usage() {
        let body = json!({
            "id": "x", "model": "gpt", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\":\"ls\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "bash", "arguments": "{\"comm"}}
            ]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}
        });
        let r = parse_completion(body.to_string().as_bytes()).unwrap();
        assert_eq!(r.stop, StopKind::ToolUse);
        assert_eq!(r.tool_uses().count(), 2);
        assert_eq!(r.incomplete_tool_inputs, vec!["c2".to_string()]);
        assert_eq!(r.usage.input_tokens, 40);
        assert_eq!(r.usage.cache_read_input_tokens, 60);
    }
}
