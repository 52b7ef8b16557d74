//! Anthropic's streaming format: SSE framing comes from `eventsource-stream`; this module turns
//! the events (message_start, content_block_start/delta/stop, message_delta, message_stop, ping,
//! error) into one `ModelResponse`. Tolerant of what the real API sends: padded JSON, no newline
//! after the last event, a tool input cut off at max_tokens, a block never closed.

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use super::types::{ContentBlock, ModelResponse, StopKind, WireUsage};
use super::LlmError;
use crate::run_event::Usage;

const PROVIDER: &str = "Anthropic";

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Value,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta,
    },
    ContentBlockStop {},
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(rename = "type", default)]
    pub error_type: String,
    #[serde(default)]
    pub message: String,
}

/// A content block being received.
#[derive(Debug)]
enum Partial {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
    Other,
}

/// Accumulates stream events into a message. Pure: feed it `data:` payloads.
#[derive(Debug, Default)]
pub struct MessageAccumulator {
    started: bool,
    id: String,
    model: String,
    usage: Usage,
    blocks: Vec<(usize, Partial)>,
    stop_reason: Option<String>,
    stopped: bool,
}

impl MessageAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `message_stop` was seen.
    pub fn is_complete(&self) -> bool {
        self.stopped
    }

    /// Feeds one event's `data:` payload (the `event:` name repeats its `type`).
    pub fn push_data(&mut self, data: &str) -> Result<(), LlmError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let event: StreamEvent = serde_json::from_str(data).map_err(|e| LlmError::Protocol {
            provider: PROVIDER,
            message: format!("undecodable stream event ({e})"),
        })?;
        self.push(event)
    }

    fn block(&mut self, index: usize) -> Result<&mut Partial, LlmError> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
            .ok_or_else(|| LlmError::Protocol {
                provider: PROVIDER,
                message: format!("delta for content block {index}, which was never started"),
            })
    }

    fn push(&mut self, event: StreamEvent) -> Result<(), LlmError> {
        match event {
            StreamEvent::MessageStart { message } => {
                self.started = true;
                self.id = message.id;
                self.model = message.model;
                if let Some(u) = message.usage {
                    u.apply_to(&mut self.usage);
                }
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let partial = match content_block.get("type").and_then(Value::as_str) {
                    Some("text") => Partial::Text(
                        content_block
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    Some("tool_use") => {
                        let s = |k: &str| {
                            content_block
                                .get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned()
                        };
                        // The start carries `input: {}`; the real input comes as JSON deltas.
                        let json = match content_block.get("input") {
                            Some(Value::Object(m)) if !m.is_empty() => {
                                Value::Object(m.clone()).to_string()
                            }
                            _ => String::new(),
                        };
                        Partial::ToolUse {
                            id: s("id"),
                            name: s("name"),
                            json,
                        }
                    }
                    _ => Partial::Other,
                };
                self.blocks.retain(|(i, _)| *i != index);
                self.blocks.push((index, partial));
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let block = self.block(index)?;
                match (block, delta) {
                    (Partial::Text(t), Delta::Text { text }) => t.push_str(&text),
                    (Partial::ToolUse { json, .. }, Delta::InputJson { partial_json }) => {
                        json.push_str(&partial_json)
                    }
                    // Deltas of kinds this agent does not use (thinking, citations...).
                    _ => {}
                }
            }
            StreamEvent::ContentBlockStop {} | StreamEvent::Ping | StreamEvent::Unknown => {}
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(u) = usage {
                    u.apply_to(&mut self.usage);
                }
            }
            StreamEvent::MessageStop => self.stopped = true,
            StreamEvent::Error { error } => {
                return Err(LlmError::StreamError {
                    provider: PROVIDER,
                    error_type: error.error_type,
                    message: error.message,
                })
            }
        }
        Ok(())
    }

    /// The message. A stream that ends without `message_stop` counts as complete only if it
    /// carried a stop reason; otherwise it was cut (a retryable connection error).
    pub fn finish(mut self) -> Result<ModelResponse, LlmError> {
        if !self.started || (!self.stopped && self.stop_reason.is_none()) {
            return Err(LlmError::Connection {
                provider: PROVIDER,
                message: "the event stream ended before the message was complete".into(),
            });
        }
        self.blocks.sort_by_key(|(i, _)| *i);
        let mut content = Vec::new();
        let mut incomplete = Vec::new();
        for (_, block) in self.blocks {
            match block {
                Partial::Text(text) => content.push(ContentBlock::Text { text }),
                Partial::ToolUse { id, name, json } => {
                    let input = if json.trim().is_empty() {
                        Some(Value::Object(Default::default()))
                    } else {
                        serde_json::from_str::<Value>(&json)
                            .ok()
                            .filter(Value::is_object)
                    };
                    let input = input.unwrap_or_else(|| {
                        incomplete.push(id.clone());
                        Value::Object(Default::default())
                    });
                    content.push(ContentBlock::ToolUse { id, name, input });
                }
                Partial::Other => {}
            }
        }
        Ok(ModelResponse {
            id: self.id,
            model: self.model,
            content,
            stop: StopKind::from_wire(self.stop_reason.as_deref().unwrap_or("end_turn")),
            usage: self.usage,
            incomplete_tool_inputs: incomplete,
        })
    }
}

/// Reads a whole SSE body into a message.
pub async fn read_stream<S, E>(body: S) -> Result<ModelResponse, LlmError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // eventsource-stream drops an event that is not followed by a blank line at EOF; the real API
    // (and the SDK fixtures) end without one, so the body is closed with one.
    let closed = body.chain(futures::stream::once(async {
        Ok::<Bytes, E>(Bytes::from_static(b"\n\n"))
    }));
    let mut events = Box::pin(closed.eventsource());
    let mut acc = MessageAccumulator::new();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| LlmError::Connection {
            provider: PROVIDER,
            message: format!("reading the event stream failed: {e}"),
        })?;
        acc.push_data(&event.data)?;
        if acc.is_complete() {
            break;
        }
    }
    acc.finish()
}

/// Parses a complete SSE text (tests and fixtures).
pub async fn parse_sse_text(text: &str) -> Result<ModelResponse, LlmError> {
    let chunk: Result<Bytes, std::convert::Infallible> =
        Ok(Bytes::copy_from_slice(text.as_bytes()));
    read_stream(futures::stream::iter([chunk])).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_tool_json_deltas_accumulate_in_block_order() {
        let mut acc = MessageAccumulator::new();
        for d in [
            r#"{"type":"message_start","message":{"id":"m1","model":"claude-x","usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":4}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}   "#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"bash","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"comm"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"and\":\"ls\"}"}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
        ] {
            acc.push_data(d).unwrap();
        }
        let m = acc.finish().unwrap();
        assert_eq!(m.stop, StopKind::ToolUse);
        assert_eq!(m.content[0], ContentBlock::text("Hello"));
        assert_eq!(
            m.content[1],
            ContentBlock::ToolUse {
                id: "t".into(),
                name: "bash".into(),
                input: serde_json::json!({"command": "ls"})
            }
        );
        assert_eq!(m.usage.input_tokens, 10);
        assert_eq!(m.usage.output_tokens, 9);
        assert_eq!(m.usage.cache_read_input_tokens, 4);
    }

    #[test]
    fn an_error_event_is_a_retryable_stream_error() {
        let mut acc = MessageAccumulator::new();
        let e = acc
            .push_data(r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#)
            .unwrap_err();
        assert!(e.is_retryable());
        assert!(e.to_string().contains("overloaded_error"));
    }

    #[test]
    fn a_stream_cut_before_the_stop_reason_is_a_connection_error() {
        let mut acc = MessageAccumulator::new();
        acc.push_data(r#"{"type":"message_start","message":{"id":"m","model":"x"}}"#)
            .unwrap();
        assert!(matches!(acc.finish(), Err(LlmError::Connection { .. })));
    }
}
