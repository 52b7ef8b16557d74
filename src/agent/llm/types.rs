//! The provider-neutral conversation: messages, content blocks, the request the loop sends and the
//! response it gets back. The shapes follow Anthropic's Messages API (their serde form is its wire
//! form); the OpenAI-compatible client maps them to chat completions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run_event::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One block of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// Blocks this agent does not use (thinking, server tools, ...): dropped.
    #[serde(other)]
    Other,
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text { text: text.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: vec![ContentBlock::text(text)],
        }
    }

    /// The text blocks of this message joined by blank lines.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } if !text.trim().is_empty() => Some(text.as_str()),
                _ => None,
            })
            .collect();
        parts.join("\n\n")
    }
}

/// The client tools the agent offers. Anthropic's own (which Claude is trained on) are sent by
/// type; other providers get equivalent JSON-schema function tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTool {
    Bash,
    TextEditor,
}

pub const BASH_TOOL: &str = "bash";
pub const EDITOR_TOOL: &str = "str_replace_based_edit_tool";

impl ClientTool {
    pub const ALL: [ClientTool; 2] = [ClientTool::Bash, ClientTool::TextEditor];

    pub fn name(self) -> &'static str {
        match self {
            ClientTool::Bash => BASH_TOOL,
            ClientTool::TextEditor => EDITOR_TOOL,
        }
    }

    /// The definition for Anthropic's `tools` array.
    pub fn anthropic_definition(self) -> Value {
        match self {
            ClientTool::Bash => serde_json::json!({"type": "bash_20250124", "name": BASH_TOOL}),
            ClientTool::TextEditor => {
                serde_json::json!({"type": "text_editor_20250728", "name": EDITOR_TOOL})
            }
        }
    }

    /// A description and JSON schema equivalent to Anthropic's built-in tool, for providers
    /// that only know function tools.
    pub fn function_schema(self) -> (&'static str, Value) {
        match self {
            ClientTool::Bash => (
                "Run a shell command in the repository's sandbox (working directory /workspace, \
                 no network). Each call is a fresh shell: cd and exported variables do not persist.",
                serde_json::json!({
                    "type": "object",
                    "properties": {
                        "command": {"type": "string", "description": "The bash command to run."},
                        "restart": {"type": "boolean", "description": "Restart the shell."}
                    }
                }),
            ),
            ClientTool::TextEditor => (
                "View, create and edit files. `view` shows a file with line numbers (optionally \
                 view_range [start, end], end -1 for the end) or lists a directory; `create` \
                 writes file_text; `str_replace` replaces old_str, which must occur exactly once, \
                 with new_str; `insert` adds insert_text after line insert_line (0 = top).",
                serde_json::json!({
                    "type": "object",
                    "properties": {
                        "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert"]},
                        "path": {"type": "string", "description": "Path relative to /workspace or absolute."},
                        "view_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                        "file_text": {"type": "string"},
                        "old_str": {"type": "string"},
                        "new_str": {"type": "string"},
                        "insert_line": {"type": "integer"},
                        "insert_text": {"type": "string"}
                    },
                    "required": ["command", "path"]
                }),
            ),
        }
    }
}

/// What the loop asks of a model. The model id is the provider's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    pub system: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub tools: Vec<ClientTool>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopKind {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    Refusal,
    Other(String),
}

impl StopKind {
    pub fn from_wire(s: &str) -> Self {
        match s {
            "end_turn" => StopKind::EndTurn,
            "tool_use" => StopKind::ToolUse,
            "max_tokens" => StopKind::MaxTokens,
            "stop_sequence" => StopKind::StopSequence,
            "refusal" => StopKind::Refusal,
            other => StopKind::Other(other.to_owned()),
        }
    }
}

/// One model reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelResponse {
    pub id: String,
    /// The model as reported by the provider (used for pricing).
    pub model: String,
    pub content: Vec<ContentBlock>,
    pub stop: StopKind,
    pub usage: Usage,
    /// Ids of tool_use blocks whose input JSON was cut off (stop at max_tokens); their `input`
    /// is `{}` and they must not be executed.
    pub incomplete_tool_inputs: Vec<String>,
}

impl ModelResponse {
    pub fn tool_uses(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.content.iter().filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }

    pub fn text(&self) -> String {
        Message {
            role: Role::Assistant,
            content: self.content.clone(),
        }
        .text()
    }
}

/// Usage as Anthropic reports it (missing fields are 0).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Overwrites the fields this report carries (stream usage is cumulative).
    pub fn apply_to(&self, usage: &mut Usage) {
        if let Some(v) = self.input_tokens {
            usage.input_tokens = v;
        }
        if let Some(v) = self.output_tokens {
            usage.output_tokens = v;
        }
        if let Some(v) = self.cache_creation_input_tokens {
            usage.cache_creation_input_tokens = v;
        }
        if let Some(v) = self.cache_read_input_tokens {
            usage.cache_read_input_tokens = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_blocks_use_the_wire_form_and_drop_unknown_kinds() {
        let v = serde_json::json!([
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "ls"}, "caller": {"type": "direct"}},
            {"type": "thinking", "thinking": "..."}
        ]);
        let blocks: Vec<ContentBlock> = serde_json::from_value(v).unwrap();
        assert_eq!(blocks[0], ContentBlock::text("hi"));
        assert!(matches!(&blocks[1], ContentBlock::ToolUse { name, .. } if name == "bash"));
        assert_eq!(blocks[2], ContentBlock::Other);
        let r = ContentBlock::ToolResult {
            tool_use_id: "t1".into(),
            content: "ok".into(),
            is_error: false,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "tool_result", "tool_use_id": "t1", "content": "ok"})
        );
    }
}
