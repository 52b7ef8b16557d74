//! A scripted fake of Anthropic's Messages API (`POST /v1/messages`) on 127.0.0.1:0. It serves a
//! script of replies (text, tool_use, end_turn) as JSON or, for `stream: true`, as the real SSE
//! event sequence (ping included, JSON padded with spaces, no newline after the last event, sent
//! in small chunks); Anthropic's error bodies for 429 (with `retry-after`), 500 and 529; and it
//! checks every request as the real API does, answering 400 `invalid_request_error` otherwise.
//! Usage fields simulate the prompt cache from the request's `cache_control` breakpoints.
//! Every request is recorded for assertions. `GET /v1/models/{model_id}` answers as the Models
//! API does (the model's info, or 404 `not_found_error`). A key marked revoked is refused on
//! every route with 401 `authentication_error` "invalid x-api-key", as Anthropic answers a bad
//! key.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// One scripted reply of the model.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Content blocks; tool_use ids are filled in when served.
    pub content: Vec<Value>,
    pub stop_reason: String,
}

impl Reply {
    /// A final text reply (`end_turn`).
    pub fn text(text: &str) -> Self {
        Reply {
            content: vec![json!({"type": "text", "text": text})],
            stop_reason: "end_turn".into(),
        }
    }

    /// One tool call (`tool_use`).
    pub fn tool(name: &str, input: Value) -> Self {
        Reply {
            content: vec![json!({"type": "tool_use", "name": name, "input": input})],
            stop_reason: "tool_use".into(),
        }
    }

    pub fn bash(command: &str) -> Self {
        Self::tool("bash", json!({"command": command}))
    }

    pub fn edit(input: Value) -> Self {
        Self::tool("str_replace_based_edit_tool", input)
    }

    /// Adds another tool call to this reply.
    pub fn and_tool(mut self, name: &str, input: Value) -> Self {
        self.content
            .push(json!({"type": "tool_use", "name": name, "input": input}));
        self.stop_reason = "tool_use".into();
        self
    }

    /// Puts a text block before the rest.
    pub fn with_text(mut self, text: &str) -> Self {
        self.content
            .insert(0, json!({"type": "text", "text": text}));
        self
    }

    /// Marks the reply as cut at `max_tokens`; in a stream the last tool input is cut in half.
    pub fn cut_at_max_tokens(mut self) -> Self {
        self.stop_reason = "max_tokens".into();
        self
    }
}

/// One step of the script.
#[derive(Debug, Clone)]
pub enum Step {
    Reply(Reply),
    /// An error status with Anthropic's error body.
    Error {
        status: u16,
        error_type: String,
        message: String,
        retry_after: Option<String>,
    },
    /// A stream that starts, then carries an `error` event (streaming requests only).
    StreamError {
        error_type: String,
        message: String,
    },
    /// No answer for this long (a hung connection), then a 500.
    Stall(std::time::Duration),
}

impl From<Reply> for Step {
    fn from(r: Reply) -> Self {
        Step::Reply(r)
    }
}

impl Step {
    pub fn overloaded() -> Self {
        Step::Error {
            status: 529,
            error_type: "overloaded_error".into(),
            message: "Overloaded".into(),
            retry_after: None,
        }
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Step::Error {
            status: 429,
            error_type: "rate_limit_error".into(),
            message:
                "This request would exceed your organization's rate limit. Please try again later."
                    .into(),
            retry_after: Some(retry_after_secs.to_string()),
        }
    }

    pub fn server_error() -> Self {
        Step::Error {
            status: 500,
            error_type: "api_error".into(),
            message: "Internal server error".into(),
            retry_after: None,
        }
    }

    pub fn overloaded_mid_stream() -> Self {
        Step::StreamError {
            error_type: "overloaded_error".into(),
            message: "Overloaded".into(),
        }
    }
}

/// A request as the fake saw it, and the status it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
struct FakeState {
    script: VecDeque<Step>,
    when_done: Option<Step>,
    recorded: Vec<Recorded>,
    next_id: u64,
    cached_prefixes: HashSet<u64>,
    /// Keys refused with 401.
    revoked: HashSet<String>,
}

pub struct FakeAnthropic {
    /// The value for `ANTHROPIC_BASE_URL`.
    pub base_url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAnthropic {
    /// Serves `script` in order; once it is used up, every request gets a 500 that says so.
    pub async fn start(script: Vec<Step>) -> Self {
        Self::start_then(script, None).await
    }

    /// Serves `script`, then `when_done` for every further request.
    pub async fn start_then(script: Vec<Step>, when_done: Option<Step>) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            script: script.into(),
            when_done,
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/models/{model_id}", get(model_info))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Anthropic API");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAnthropic {
            base_url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("fake state").recorded.clone()
    }

    /// The bodies of requests that were answered with a scripted reply.
    pub fn answered_bodies(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
            .collect()
    }

    /// Refuses `key` from now on, as Anthropic refuses a revoked or mistyped key.
    pub fn revoke_key(&self, key: &str) {
        self.state
            .lock()
            .expect("fake state")
            .revoked
            .insert(key.to_owned());
    }

    /// Script steps not yet served.
    pub fn remaining(&self) -> usize {
        self.state.lock().expect("fake state").script.len()
    }
}

fn error_response(
    status: u16,
    error_type: &str,
    message: &str,
    retry_after: Option<&str>,
) -> Response {
    let body = json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_fake_0001"
    });
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            ("content-type", "application/json"),
            ("request-id", "req_fake_0001"),
        ],
        body.to_string(),
    )
        .into_response();
    if let Some(ra) = retry_after {
        if let Ok(v) = ra.parse() {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}

/// The models the fake knows: Claude ids, as the Models API resolves them.
fn known_model(id: &str) -> bool {
    id.starts_with("claude-")
}

/// `GET /v1/models/{model_id}`: costs nothing, needs a valid key.
async fn model_info(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_headers(&headers).and_then(|()| check_key(&state, &headers)) {
        return error_response(r.status, r.error_type, &r.message, None);
    }
    if !known_model(&model_id) {
        return error_response(404, "not_found_error", &format!("model: {model_id}"), None);
    }
    axum::Json(json!({
        "type": "model",
        "id": model_id,
        "display_name": "Claude (fake)",
        "created_at": "2025-09-29T00:00:00Z"
    }))
    .into_response()
}

fn check_key(state: &Mutex<FakeState>, headers: &HeaderMap) -> Result<(), Rejection> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if state.lock().expect("fake state").revoked.contains(key) {
        return Err(Rejection {
            status: 401,
            error_type: "authentication_error",
            message: "invalid x-api-key".into(),
        });
    }
    Ok(())
}

async fn messages(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = check_key(&state, &headers) {
        return error_response(r.status, r.error_type, &r.message, None);
    }
    match answer(State(state), headers, body) {
        Ok(response) => response,
        Err(stall) => {
            tokio::time::sleep(stall).await;
            error_response(500, "api_error", "the fake stalled", None)
        }
    }
}

/// Answers one request; `Err` asks the caller to stall that long first (outside the lock).
fn answer(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, std::time::Duration> {
    let parsed: Result<Value, _> = serde_json::from_str(&body);
    let check = match &parsed {
        Ok(v) => {
            check_headers(&headers).and_then(|()| validate_request(v, Strictness::Alternating))
        }
        Err(e) => Err(Rejection::invalid(format!(
            "The request body is not valid JSON: {e}"
        ))),
    };
    let body_value = parsed.unwrap_or(Value::Null);
    let mut st = state.lock().expect("fake state");
    if let Err(r) = check {
        st.recorded.push(Recorded {
            headers,
            body: body_value,
            status: r.status,
        });
        return Ok(error_response(r.status, r.error_type, &r.message, None));
    }
    let step = st
        .script
        .pop_front()
        .or_else(|| st.when_done.clone())
        .unwrap_or(Step::Error {
            status: 500,
            error_type: "api_error".into(),
            message: "fake Anthropic: the script is used up".into(),
            retry_after: None,
        });
    let stream = body_value.get("stream").and_then(Value::as_bool) == Some(true);
    let status = match &step {
        Step::Error { status, .. } => *status,
        Step::Stall(_) => 500,
        _ => 200,
    };
    st.recorded.push(Recorded {
        headers,
        body: body_value.clone(),
        status,
    });
    match step {
        Step::Stall(d) => Err(d),
        Step::Error {
            status,
            error_type,
            message,
            retry_after,
        } => Ok(error_response(
            status,
            &error_type,
            &message,
            retry_after.as_deref(),
        )),
        Step::StreamError {
            error_type,
            message,
        } => {
            let start = json!({"type": "message_start", "message": {"id": "msg_fake_err", "type": "message", "role": "assistant", "model": model_of(&body_value), "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}}});
            let err = json!({"type": "error", "error": {"type": error_type, "message": message}});
            let text =
                format!("event: message_start\ndata: {start}\n\nevent: error\ndata: {err}\n\n");
            Ok(sse_response(text))
        }
        Step::Reply(reply) => {
            let usage = simulate_usage(&mut st, &body_value, &reply);
            st.next_id += 1;
            let n = st.next_id;
            let mut content = reply.content.clone();
            for (i, block) in content.iter_mut().enumerate() {
                if block["type"] == "tool_use" && block.get("id").is_none() {
                    block["id"] = json!(format!("toolu_fake_{n:04}_{i}"));
                }
            }
            let message = json!({
                "id": format!("msg_fake_{n:04}"),
                "type": "message",
                "role": "assistant",
                "model": model_of(&body_value),
                "content": content,
                "stop_reason": reply.stop_reason,
                "stop_sequence": null,
                "usage": usage,
            });
            drop(st);
            Ok(if stream {
                sse_response(render_sse(&message))
            } else {
                (
                    StatusCode::OK,
                    [
                        ("content-type", "application/json"),
                        ("request-id", "req_fake_0002"),
                    ],
                    message.to_string(),
                )
                    .into_response()
            })
        }
    }
}

fn model_of(body: &Value) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_owned()
}

/// Sends the text in small chunks, so events are split across reads as on a real connection.
fn sse_response(text: String) -> Response {
    let bytes = text.into_bytes();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(37).map(|c| Ok(c.to_vec())).collect();
    (
        StatusCode::OK,
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// The real event sequence for a message: message_start, per block start / deltas / stop (a
/// ping after the first start), message_delta with stop_reason and usage, message_stop. Data
/// lines are padded with spaces like the real API's, and the last event has no trailing newline.
pub fn render_sse(message: &Value) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value, pad: usize| {
        out.push_str(&format!(
            "event: {name}\ndata: {data}{}\n\n",
            " ".repeat(pad)
        ));
    };
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    let usage = message["usage"].clone();
    start["usage"]["output_tokens"] = json!(1);
    event(
        "message_start",
        json!({"type": "message_start", "message": start}),
        1,
    );
    let cut = message["stop_reason"] == "max_tokens";
    let blocks = message["content"].as_array().cloned().unwrap_or_default();
    let last = blocks.len().saturating_sub(1);
    for (i, block) in blocks.iter().enumerate() {
        let mut head = block.clone();
        match block["type"].as_str() {
            Some("text") => head["text"] = json!(""),
            Some("tool_use") => head["input"] = json!({}),
            _ => {}
        }
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": head}),
            5,
        );
        if i == 0 {
            event("ping", json!({"type": "ping"}), 0);
        }
        match block["type"].as_str() {
            Some("text") => {
                let text = block["text"].as_str().unwrap_or_default();
                let mid = text
                    .char_indices()
                    .nth(text.chars().count() / 2)
                    .map(|(b, _)| b)
                    .unwrap_or(0);
                for part in [&text[..mid], &text[mid..]] {
                    event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": part}}),
                        3,
                    );
                }
            }
            Some("tool_use") => {
                let json_text = block["input"].to_string();
                let mut chars: Vec<char> = json_text.chars().collect();
                if cut && i == last {
                    chars.truncate(chars.len() / 2);
                }
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": ""}}),
                    2,
                );
                for piece in chars.chunks(7) {
                    event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": piece.iter().collect::<String>()}}),
                        4,
                    );
                }
            }
            _ => {}
        }
        // At max_tokens the real API may end without closing the last block.
        if !(cut && i == last) {
            event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": i}),
                1,
            );
        }
    }
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null}, "usage": usage}),
        6,
    );
    out.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"    }");
    out
}

/// Input token counts as the cache would give them: the longest prefix (ending at a block
/// boundary up to 20 blocks before a breakpoint) written by an earlier request is read; the rest
/// up to the last breakpoint is written; what follows is plain input. ~4 characters a token.
fn simulate_usage(st: &mut FakeState, body: &Value, reply: &Reply) -> Value {
    let units = cache_units(body);
    let mut hashes = Vec::with_capacity(units.len());
    let mut tokens = Vec::with_capacity(units.len());
    let mut h = 0u64;
    let mut total = 0u64;
    for (text, _) in &units {
        let mut hasher = DefaultHasher::new();
        h.hash(&mut hasher);
        text.hash(&mut hasher);
        h = hasher.finish();
        hashes.push(h);
        total += (text.len() as u64).div_ceil(4);
        tokens.push(total);
    }
    let breakpoints: Vec<usize> = units
        .iter()
        .enumerate()
        .filter(|(_, (_, bp))| *bp)
        .map(|(i, _)| i)
        .collect();
    let mut read = 0;
    for &b in &breakpoints {
        for k in (b.saturating_sub(20)..=b).rev() {
            if st.cached_prefixes.contains(&hashes[k]) {
                read = read.max(tokens[k]);
                break;
            }
        }
    }
    let written_to = breakpoints.last().map(|&b| tokens[b]).unwrap_or(0);
    let creation = written_to.saturating_sub(read);
    for &b in &breakpoints {
        st.cached_prefixes.insert(hashes[b]);
    }
    let output: u64 = reply
        .content
        .iter()
        .map(|b| (b.to_string().len() as u64).div_ceil(4))
        .sum();
    json!({
        "input_tokens": total - read - creation,
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
        "output_tokens": output.max(1),
        "service_tier": "standard"
    })
}

/// The cacheable units of a request in prefix order (tools, system, message blocks), each
/// without its `cache_control`, and whether it carries a breakpoint.
pub fn cache_units(body: &Value) -> Vec<(String, bool)> {
    let unit = |v: &Value, prefix: &str| {
        let bp = v.get("cache_control").is_some();
        let mut c = v.clone();
        if let Some(o) = c.as_object_mut() {
            o.remove("cache_control");
        }
        (format!("{prefix}{c}"), bp)
    };
    let mut units = Vec::new();
    for t in body["tools"].as_array().into_iter().flatten() {
        units.push(unit(t, "tool:"));
    }
    match &body["system"] {
        Value::String(s) => units.push((format!("system:{s}"), false)),
        Value::Array(a) => a.iter().for_each(|b| units.push(unit(b, "system:"))),
        _ => {}
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        let role = m["role"].as_str().unwrap_or("?");
        match &m["content"] {
            Value::String(s) => units.push((format!("{role}:{s}"), false)),
            Value::Array(a) => a
                .iter()
                .for_each(|b| units.push(unit(b, &format!("{role}:")))),
            _ => {}
        }
    }
    units
}

/// Why a request was refused: status, Anthropic error type and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

impl Rejection {
    fn invalid(message: String) -> Self {
        Rejection {
            status: 400,
            error_type: "invalid_request_error",
            message,
        }
    }
}

fn check_headers(headers: &HeaderMap) -> Result<(), Rejection> {
    if headers.get("x-api-key").is_none_or(|v| v.is_empty()) {
        return Err(Rejection {
            status: 401,
            error_type: "authentication_error",
            message: "x-api-key header is required".into(),
        });
    }
    if headers.get("anthropic-version").is_none() {
        return Err(Rejection::invalid(
            "anthropic-version: header is required".into(),
        ));
    }
    Ok(())
}

/// How strictly turn order is checked. The real API merges consecutive turns of one role
/// (`Real`); the fake server also refuses them (`Alternating`), since Backspace never needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    Real,
    Alternating,
}

const KNOWN_TOOL_TYPES: &[&str] = &[
    "custom",
    "bash_20250124",
    "bash_20241022",
    "text_editor_20250728",
    "text_editor_20250429",
    "text_editor_20250124",
];

/// Checks a Messages API request body as the real API does.
pub fn validate_request(body: &Value, strictness: Strictness) -> Result<(), Rejection> {
    let bad = |m: String| Err(Rejection::invalid(m));
    if !body.is_object() {
        return bad("The request body must be a JSON object.".into());
    }
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return bad("model: Field required".into());
    }
    match body.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => {}
        Some(_) => return bad("max_tokens: must be greater than or equal to 1".into()),
        None => return bad("max_tokens: Field required".into()),
    }
    match body.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(a))
            if a.iter()
                .all(|b| b["type"] == "text" && b["text"].is_string()) => {}
        Some(_) => {
            return bad("system: Input should be a valid string or a list of text blocks".into())
        }
    }
    for (i, tool) in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if tool.get("name").and_then(Value::as_str).is_none() {
            return bad(format!("tools.{i}.name: Field required"));
        }
        let ty = tool.get("type").and_then(Value::as_str).unwrap_or("custom");
        if !KNOWN_TOOL_TYPES.contains(&ty) {
            return bad(format!("tools.{i}.type: unknown tool type `{ty}`"));
        }
        if ty == "custom" && !tool.get("input_schema").is_some_and(Value::is_object) {
            return bad(format!("tools.{i}.custom.input_schema: Field required"));
        }
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return bad("messages: Field required".into());
    };
    if messages.is_empty() {
        return bad("messages: at least one message is required".into());
    }
    // (role, blocks) with string content as one text block; consecutive roles merged as the API does.
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut alternates = true;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return bad(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        let blocks = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(a)) if !a.is_empty() => a.clone(),
            _ => {
                let last = i + 1 == messages.len() && role == "assistant";
                if last {
                    Vec::new()
                } else {
                    return bad(format!("messages.{i}: all messages must have non-empty content except for the optional final assistant message"));
                }
            }
        };
        for (j, b) in blocks.iter().enumerate() {
            if b.get("type").and_then(Value::as_str).is_none() {
                return bad(format!("messages.{i}.content.{j}.type: Field required"));
            }
            let final_turn = i + 1 == messages.len();
            if b["type"] == "text"
                && !final_turn
                && b["text"].as_str().is_none_or(|t| t.trim().is_empty())
            {
                return bad(format!("messages.{i}.content.{j}: text content blocks must contain non-whitespace text"));
            }
            if b["type"] == "tool_use" && !b["input"].is_object() {
                return bad(format!(
                    "messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
                ));
            }
        }
        match turns.last_mut() {
            Some((r, bs)) if r == role => {
                alternates = false;
                bs.extend(blocks);
            }
            _ => turns.push((role.to_owned(), blocks)),
        }
    }
    if turns[0].0 != "user" {
        return bad("messages: first message must use the \"user\" role".into());
    }
    for (i, (role, blocks)) in turns.iter().enumerate() {
        let ids_of = |bs: &[Value], ty: &str, key: &str| -> Vec<String> {
            bs.iter()
                .filter(|b| b["type"] == ty)
                .filter_map(|b| b[key].as_str().map(str::to_owned))
                .collect()
        };
        if role == "user" {
            let prev_uses = if i > 0 && turns[i - 1].0 == "assistant" {
                ids_of(&turns[i - 1].1, "tool_use", "id")
            } else {
                Vec::new()
            };
            for (j, b) in blocks.iter().enumerate() {
                if b["type"] == "tool_result" {
                    let id = b["tool_use_id"].as_str().unwrap_or_default();
                    if !prev_uses.iter().any(|u| u == id) {
                        return bad(format!("messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."));
                    }
                }
            }
        } else {
            let uses = ids_of(blocks, "tool_use", "id");
            if uses.is_empty() {
                continue;
            }
            let answered = turns
                .get(i + 1)
                .map(|(_, bs)| ids_of(bs, "tool_result", "tool_use_id"))
                .unwrap_or_default();
            let missing: Vec<&str> = uses
                .iter()
                .filter(|u| !answered.contains(u))
                .map(String::as_str)
                .collect();
            // A trailing assistant turn (prefill) is allowed to end with tool_use.
            if !missing.is_empty() && i + 1 < turns.len() {
                return bad(format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", missing.join(", ")));
            }
            if let Some((_, next)) = turns.get(i + 1) {
                let first_other = next
                    .iter()
                    .position(|b| b["type"] != "tool_result")
                    .unwrap_or(next.len());
                if next[first_other..]
                    .iter()
                    .any(|b| b["type"] == "tool_result")
                {
                    return bad(format!("messages.{}: `tool_result` blocks must come first in the user message, before any other content.", i + 1));
                }
            }
        }
    }
    if strictness == Strictness::Alternating && !alternates {
        return bad("messages: roles must alternate between \"user\" and \"assistant\", but found two turns of the same role in a row".into());
    }
    let breakpoints = count_cache_control(body);
    if breakpoints > 4 {
        return bad(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        ));
    }
    Ok(())
}

fn count_cache_control(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            usize::from(m.contains_key("cache_control"))
                + m.values().map(count_cache_control).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_cache_control).sum(),
        _ => 0,
    }
}
