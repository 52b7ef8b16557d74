//! A scripted fake of an OpenAI-compatible chat-completions API (`POST /v1/chat/completions`) on
//! 127.0.0.1:0. It serves a script of replies (text, tool calls) in the real response shape with
//! usage, OpenAI's error body for error statuses, checks each request (bearer key, model,
//! messages, every assistant `tool_calls` id answered by a `tool` message before the next turn,
//! function tools with schemas) and answers 400 otherwise. Every request is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Reply {
    pub text: Option<String>,
    pub tool_calls: Vec<(String, Value)>,
    pub finish_reason: String,
}

impl Reply {
    pub fn text(text: &str) -> Self {
        Reply {
            text: Some(text.into()),
            tool_calls: Vec::new(),
            finish_reason: "stop".into(),
        }
    }

    pub fn tool(name: &str, input: Value) -> Self {
        Reply {
            text: None,
            tool_calls: vec![(name.into(), input)],
            finish_reason: "tool_calls".into(),
        }
    }

    pub fn bash(command: &str) -> Self {
        Self::tool("bash", json!({"command": command}))
    }

    pub fn edit(input: Value) -> Self {
        Self::tool("str_replace_based_edit_tool", input)
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    Reply(Reply),
    Error { status: u16, message: String },
}

impl From<Reply> for Step {
    fn from(r: Reply) -> Self {
        Step::Reply(r)
    }
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
struct FakeState {
    script: VecDeque<Step>,
    recorded: Vec<Recorded>,
    next_id: u64,
}

pub struct FakeOpenAi {
    /// The value for `OPENAI_BASE_URL` (with `/v1`).
    pub base_url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOpenAi {
    pub async fn start(script: Vec<Step>) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            script: script.into(),
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake OpenAI API");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenAi {
            base_url: format!("http://{addr}/v1"),
            state,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("fake state").recorded.clone()
    }

    pub fn remaining(&self) -> usize {
        self.state.lock().expect("fake state").script.len()
    }
}

fn error(status: u16, message: &str) -> Response {
    let ty = if status == 400 {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        json!({"error": {"message": message, "type": ty, "param": null, "code": null}}).to_string(),
    )
        .into_response()
}

async fn completions(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let auth_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    let mut st = state.lock().expect("fake state");
    if !auth_ok {
        st.recorded.push(Recorded {
            headers,
            body: parsed,
            status: 401,
        });
        return error(401, "You didn't provide an API key.");
    }
    if let Err(m) = validate_request(&parsed) {
        st.recorded.push(Recorded {
            headers,
            body: parsed,
            status: 400,
        });
        return error(400, &m);
    }
    let step = st.script.pop_front().unwrap_or(Step::Error {
        status: 500,
        message: "fake OpenAI: the script is used up".into(),
    });
    let status = match &step {
        Step::Error { status, .. } => *status,
        Step::Reply(_) => 200,
    };
    st.recorded.push(Recorded {
        headers,
        body: parsed.clone(),
        status,
    });
    st.next_id += 1;
    let n = st.next_id;
    match step {
        Step::Error { status, message } => error(status, &message),
        Step::Reply(r) => {
            let calls: Vec<Value> = r
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, (name, input))| {
                    json!({
                        "id": format!("call_fake_{n}_{i}"), "type": "function",
                        "function": {"name": name, "arguments": input.to_string()}
                    })
                })
                .collect();
            let mut message = json!({"role": "assistant", "content": r.text, "refusal": null});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            let prompt = (body.len() as u64).div_ceil(4);
            let completion = (message.to_string().len() as u64).div_ceil(4);
            let cached = (prompt / 2 / 64) * 64;
            let resp = json!({
                "id": format!("chatcmpl-fake{n}"),
                "object": "chat.completion",
                "created": 1_700_000_000 + n,
                "model": parsed["model"],
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": r.finish_reason}],
                "usage": {
                    "prompt_tokens": prompt, "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "prompt_tokens_details": {"cached_tokens": cached}
                }
            });
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                resp.to_string(),
            )
                .into_response()
        }
    }
}

/// Checks a chat-completions request as OpenAI does.
pub fn validate_request(body: &Value) -> Result<(), String> {
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("you must provide a model parameter".into());
    }
    for (i, t) in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if t["type"] != "function"
            || !t["function"]["name"].is_string()
            || !t["function"]["parameters"].is_object()
        {
            return Err(format!(
                "Invalid 'tools[{i}]': expected a function tool with a name and parameters"
            ));
        }
    }
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Err("'messages' must be a non-empty array".into());
    };
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if role == "tool" {
            let id = m["tool_call_id"].as_str().unwrap_or_default();
            match pending.iter().position(|p| p == id) {
                Some(k) => {
                    pending.remove(k);
                }
                None => return Err(format!("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls' (messages[{i}], tool_call_id {id}).")),
            }
            continue;
        }
        if !pending.is_empty() {
            return Err(format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}", pending.join(", ")));
        }
        match role {
            "system" | "user" => {
                if !m["content"].is_string() && !m["content"].is_array() {
                    return Err(format!(
                        "Invalid 'messages[{i}].content': expected a string"
                    ));
                }
            }
            "assistant" => {
                for c in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let args = c["function"]["arguments"].as_str().unwrap_or_default();
                    if serde_json::from_str::<Value>(args).is_err() {
                        return Err(format!(
                            "Invalid 'messages[{i}].tool_calls': arguments must be JSON"
                        ));
                    }
                    pending.push(c["id"].as_str().unwrap_or_default().to_owned());
                }
                if m["content"].is_null() && m.get("tool_calls").is_none() {
                    return Err(format!(
                        "Invalid 'messages[{i}]': an assistant message needs content or tool_calls"
                    ));
                }
            }
            other => return Err(format!("Invalid 'messages[{i}].role': {other}")),
        }
    }
    if !pending.is_empty() {
        return Err(format!(
            "tool_call_ids without responses: {}",
            pending.join(", ")
        ));
    }
    Ok(())
}
