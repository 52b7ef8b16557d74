//! The agent against scripted fakes of the model APIs and, for the acceptance session, a real
//! Docker sandbox: fixtures parse, streams and JSON round-trip, retries, budgets, caching, the
//! OpenAI-compatible provider, fallback.

mod support;
use support::within;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backspace::agent::budget::Budgets;
use backspace::agent::llm::anthropic::{self, AnthropicClient, AnthropicConfig};
use backspace::agent::llm::openai::{OpenAiClient, OpenAiConfig};
use backspace::agent::llm::types::{ClientTool, ContentBlock, Message, ModelRequest, StopKind};
use backspace::agent::llm::{sse, FallbackProvider, LlmError, ModelProvider, RetryPolicy};
use backspace::agent::tools::{run_tool, ToolResult};
use backspace::agent::ToolLimits;
use backspace::agent::{
    Agent, AgentConfig, AgentOutcome, AgentTask, CommandOutput, StopReason, Workspace,
    WorkspaceError,
};
use backspace::run_event::RunEvent;
use secrecy::SecretString;
use serde_json::{json, Value};
use support::fake_anthropic::{self as fa, FakeAnthropic, Step};
use support::fake_openai::{self as fo, FakeOpenAi};
use url::Url;

fn fixture(name: &str) -> String {
    let bytes = support::fixtures::fixture(&format!("anthropic/{name}"));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).expect("fixture JSON")
}

/// Every test runs under a time limit.
fn anthropic_config(fake: &FakeAnthropic, stream: bool) -> AnthropicConfig {
    let mut c = AnthropicConfig::new(
        Url::parse(&fake.base_url).expect("fake url"),
        SecretString::from("sk-ant-test-key".to_owned()),
        "claude-sonnet-4-5",
    );
    c.stream = stream;
    c.retry = RetryPolicy::fast();
    c
}

fn anthropic_provider(fake: &FakeAnthropic, stream: bool) -> Arc<dyn ModelProvider> {
    Arc::new(AnthropicClient::new(anthropic_config(fake, stream)).expect("client"))
}

fn openai_provider(fake: &FakeOpenAi) -> Arc<dyn ModelProvider> {
    let mut c = OpenAiConfig::new(
        Url::parse(&fake.base_url).expect("fake url"),
        Some(SecretString::from("sk-openai-test".to_owned())),
        "gpt-fake",
    );
    c.retry = RetryPolicy::fast();
    Arc::new(OpenAiClient::new(c).expect("client"))
}

fn task() -> AgentTask {
    AgentTask {
        repo: "octo/widgets".into(),
        request: "make greet say hello to the world".into(),
        ..AgentTask::default()
    }
}

fn one_turn_request(text: &str) -> ModelRequest {
    ModelRequest {
        system: "You are a test.".into(),
        messages: vec![Message::user_text(text)],
        max_tokens: 256,
        tools: ClientTool::ALL.to_vec(),
    }
}

/// An in-memory workspace: files in a map; `sleep N` sleeps (and times out like the sandbox);
/// `cat F` prints a file; `false` fails; anything else echoes. Directories do not exist.
#[derive(Default)]
struct MemoryWorkspace {
    files: Mutex<HashMap<String, Vec<u8>>>,
    commands: Mutex<Vec<String>>,
}

impl MemoryWorkspace {
    fn with_file(path: &str, text: &str) -> Self {
        let ws = MemoryWorkspace::default();
        ws.files
            .lock()
            .unwrap()
            .insert(path.to_owned(), text.as_bytes().to_vec());
        ws
    }

    fn file(&self, path: &str) -> Option<String> {
        self.files
            .lock()
            .unwrap()
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

fn key(path: &str) -> String {
    path.trim_start_matches("/workspace/").to_owned()
}

#[async_trait]
impl Workspace for MemoryWorkspace {
    async fn exec(
        &self,
        command: &str,
        timeout: Duration,
        _cap: usize,
    ) -> Result<CommandOutput, WorkspaceError> {
        let started = Instant::now();
        if !command.starts_with("if [ -d") {
            self.commands.lock().unwrap().push(command.to_owned());
        }
        let mut out = CommandOutput {
            exit_code: 0,
            stdout: String::new(),
            stderr: String::new(),
            timed_out: false,
            out_of_memory: false,
            duration: Duration::ZERO,
            truncated_bytes: 0,
        };
        if command.starts_with("if [ -d") {
            out.exit_code = 3;
        } else if let Some(secs) = command.strip_prefix("sleep ") {
            let want = Duration::from_secs_f64(secs.trim().parse().unwrap_or(1.0));
            tokio::time::sleep(want.min(timeout)).await;
            if want > timeout {
                out.timed_out = true;
                out.exit_code = 137;
            }
        } else if let Some(path) = command.strip_prefix("cat ") {
            match self.file(&key(path.trim())) {
                Some(t) => out.stdout = t,
                None => {
                    out.exit_code = 1;
                    out.stderr = format!("cat: {path}: No such file or directory\n");
                }
            }
        } else if command == "false" {
            out.exit_code = 1;
        } else {
            out.stdout = format!("ran: {command}\n");
        }
        out.duration = started.elapsed();
        Ok(out)
    }

    async fn read_file(&self, path: &str) -> Result<Vec<u8>, WorkspaceError> {
        self.files
            .lock()
            .unwrap()
            .get(&key(path))
            .cloned()
            .ok_or_else(|| WorkspaceError::NotFound { path: path.into() })
    }

    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), WorkspaceError> {
        self.files
            .lock()
            .unwrap()
            .insert(key(path), contents.to_vec());
        Ok(())
    }
}

async fn run_agent(
    provider: Arc<dyn ModelProvider>,
    config: AgentConfig,
    ws: &dyn Workspace,
) -> (AgentOutcome, Vec<RunEvent>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = Agent::new(provider, config).run(&task(), ws, &tx).await;
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    (outcome, events)
}

fn progress_messages(events: &[RunEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Progress { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Fixtures

#[tokio::test]
async fn sdk_stream_fixtures_parse_into_messages() {
    within(10, async {
        let m = sse::parse_sse_text(&fixture("stream-basic-text.sdk-fixture.sse"))
            .await
            .expect("basic text");
        assert_eq!(m.content, vec![ContentBlock::text("Hello there!")]);
        assert_eq!(m.stop, StopKind::EndTurn);
        assert_eq!((m.usage.input_tokens, m.usage.output_tokens), (11, 6));

        for name in [
            "stream-tool-use.sdk-fixture.sse",
            "stream-tool-use.ts-sdk-fixture.sse",
        ] {
            let m = sse::parse_sse_text(&fixture(name)).await.expect(name);
            assert_eq!(m.stop, StopKind::ToolUse, "{name}");
            assert_eq!(m.text(), "I'll check the current weather in Paris for you.");
            let (id, tool, input) = m.tool_uses().next().expect("tool use");
            assert_eq!(id, "toolu_01NRLabsLyVHZPKxbKvkfSMn");
            assert_eq!(tool, "get_weather");
            assert_eq!(input, &json!({"location": "Paris"}));
            assert!(m.incomplete_tool_inputs.is_empty());
        }

        // Real wire data: padded JSON, cache usage fields, `caller` on the block.
        let m = sse::parse_sse_text(&fixture("stream-tool-use.recorded.sse"))
            .await
            .expect("recorded stream");
        assert_eq!(m.model, "claude-haiku-4-5-20251001");
        let (_, _, input) = m.tool_uses().next().expect("tool use");
        assert_eq!(
            input,
            &json!({"location": "San Francisco, CA", "units": "f"})
        );
        assert_eq!(m.usage.input_tokens, 656);
    })
    .await
}

#[tokio::test]
async fn partial_tool_json_at_max_tokens_is_flagged_not_fatal() {
    within(10, async {
        let m = sse::parse_sse_text(&fixture("stream-incomplete-partial-json.sdk-fixture.sse"))
            .await
            .expect("partial stream");
        assert_eq!(m.stop, StopKind::MaxTokens);
        assert_eq!(
            m.incomplete_tool_inputs,
            vec!["toolu_01EKqbqmZrGRXy18eN7m9kvY".to_string()]
        );
        assert!(m
            .text()
            .starts_with("I'll create a comprehensive tax guide"));
        assert_eq!(m.usage.output_tokens, 124);
    })
    .await
}

#[tokio::test]
async fn recorded_json_responses_parse() {
    within(10, async {
        let m = anthropic::parse_message(fixture("message-tool-use.nonstreaming.json").as_bytes())
            .expect("non-streaming fixture");
        assert_eq!(m.stop, StopKind::ToolUse);
        assert_eq!(
            m.tool_uses().next().map(|t| t.2.clone()),
            Some(json!({"value": "test"}))
        );
        assert_eq!(m.usage.output_tokens, 76);

        let nock = fixture_json("recorded-ToolRunner.ts-nock.json");
        let exchanges = nock.as_array().expect("array");
        assert_eq!(exchanges.len(), 10);
        for (i, x) in exchanges.iter().enumerate() {
            let m = anthropic::parse_message(x["response"].to_string().as_bytes())
                .unwrap_or_else(|e| panic!("exchange {i}: {e}"));
            assert!(!m.content.is_empty(), "exchange {i}");
        }
        let py = fixture_json("recorded-nonstream-tool-runner.python-snapshot.json");
        let first = &py[0]["response"]["body"];
        let m = anthropic::parse_message(first.to_string().as_bytes()).expect("python snapshot");
        assert_eq!(m.usage.input_tokens, 659);
    })
    .await
}

#[tokio::test]
async fn recorded_error_bodies_name_status_type_and_message() {
    within(10, async {
        let rec = fixture_json("error-429-rate_limit.recorded.json");
        let e = anthropic::api_error(429, &rec["body"].to_string(), None);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "Anthropic API returned HTTP 429 rate_limit_error: This request would exceed"
            ),
            "{text}"
        );
        assert!(text.contains("req_011CYK5mje9HkutJtmfPzzNC"));
        assert!(e.is_retryable());

        let py = fixture_json("recorded-nonstream-tool-runner.python-snapshot.json");
        let e = anthropic::api_error(400, &py[1]["response"]["body"].to_string(), None);
        assert!(e
            .to_string()
            .contains("400 invalid_request_error: messages.0.content.1: unexpected `tool_use_id`"));
        assert!(!e.is_retryable());
    })
    .await
}

#[tokio::test]
async fn the_fakes_validator_accepts_what_the_real_api_accepted_and_refuses_what_it_refused() {
    within(10, async {
        let nock = fixture_json("recorded-ToolRunner.ts-nock.json");
        for (i, x) in nock.as_array().expect("array").iter().enumerate() {
            assert_eq!(x["status"], 200);
            fa::validate_request(&x["body"], fa::Strictness::Real).unwrap_or_else(|r| {
                panic!("nock exchange {i} was accepted by the real API: {r:?}")
            });
        }
        let stream = fixture_json("recorded-stream-tool-runner.python-snapshot.json");
        for x in stream.as_array().expect("array") {
            fa::validate_request(&x["request"]["body"], fa::Strictness::Real).expect("accepted");
        }
        let py = fixture_json("recorded-nonstream-tool-runner.python-snapshot.json");
        fa::validate_request(&py[0]["request"]["body"], fa::Strictness::Real).expect("accepted");
        let refused = fa::validate_request(&py[1]["request"]["body"], fa::Strictness::Real)
            .expect_err("the real API refused this request");
        assert_eq!(refused.status, 400);
        assert_eq!(refused.error_type, "invalid_request_error");
        assert_eq!(
            refused.message,
            py[1]["response"]["body"]["error"]["message"]
                .as_str()
                .unwrap()
        );
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The client against the fake

#[tokio::test]
async fn fake_streams_and_json_round_trip_through_the_client() {
    within(20, async {
        for stream in [true, false] {
            let reply = fa::Reply::bash("cargo test")
                .with_text("Let me run the tests.")
                .and_tool(
                    "str_replace_based_edit_tool",
                    json!({"command": "view", "path": "src/lib.rs", "view_range": [1, 20]}),
                );
            let fake =
                FakeAnthropic::start(vec![reply.into(), fa::Reply::text("All done ✓").into()])
                    .await;
            let p = anthropic_provider(&fake, stream);
            let m = p
                .complete(&one_turn_request("go"))
                .await
                .expect("first reply");
            assert_eq!(m.stop, StopKind::ToolUse);
            assert_eq!(m.text(), "Let me run the tests.");
            let calls: Vec<_> = m
                .tool_uses()
                .map(|(_, n, i)| (n.to_owned(), i.clone()))
                .collect();
            assert_eq!(
                calls[0],
                ("bash".to_string(), json!({"command": "cargo test"}))
            );
            assert_eq!(calls[1].1["view_range"], json!([1, 20]));
            assert!(m.usage.input_tokens + m.usage.cache_creation_input_tokens > 0);
            let m = p
                .complete(&one_turn_request("more"))
                .await
                .expect("second reply");
            assert_eq!(m.text(), "All done ✓");

            let reqs = fake.requests();
            assert_eq!(reqs.len(), 2);
            let h = &reqs[0].headers;
            assert_eq!(h["x-api-key"], "sk-ant-test-key");
            assert_eq!(h["anthropic-version"], "2023-06-01");
            assert_eq!(reqs[0].body["stream"].as_bool().unwrap_or(false), stream);
            assert_eq!(reqs[0].body["tools"][0]["type"], "bash_20250124");
            assert_eq!(reqs[0].body["tools"][1]["type"], "text_editor_20250728");
        }
    })
    .await
}

#[tokio::test]
async fn overloaded_twice_then_success() {
    within(20, async {
        for stream in [true, false] {
            let fake = FakeAnthropic::start(vec![
                Step::overloaded(),
                Step::overloaded(),
                fa::Reply::text("finally").into(),
            ])
            .await;
            let m = anthropic_provider(&fake, stream)
                .complete(&one_turn_request("hi"))
                .await
                .expect("third attempt succeeds");
            assert_eq!(m.text(), "finally");
            let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
            assert_eq!(statuses, vec![529, 529, 200]);
        }
    })
    .await
}

#[tokio::test]
async fn an_overloaded_error_event_mid_stream_is_retried() {
    within(20, async {
        let fake = FakeAnthropic::start(vec![
            Step::overloaded_mid_stream(),
            fa::Reply::text("ok").into(),
        ])
        .await;
        let m = anthropic_provider(&fake, true)
            .complete(&one_turn_request("hi"))
            .await
            .expect("retried after the error event");
        assert_eq!(m.text(), "ok");
        assert_eq!(fake.requests().len(), 2);
    })
    .await
}

#[tokio::test]
async fn rate_limit_retry_after_is_obeyed() {
    within(20, async {
        let fake =
            FakeAnthropic::start(vec![Step::rate_limited(1), fa::Reply::text("ok").into()]).await;
        let p = anthropic_provider(&fake, false);
        let started = Instant::now();
        p.complete(&one_turn_request("hi"))
            .await
            .expect("succeeds after the wait");
        let waited = started.elapsed();
        // The client's own backoff is at most 20 ms here: only retry-after explains a second.
        assert!(
            waited >= Duration::from_millis(1000),
            "waited only {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        assert_eq!(fake.requests().len(), 2);
    })
    .await
}

#[tokio::test]
async fn a_lasting_500_gives_up_with_a_clear_error_and_never_leaks_the_key() {
    within(20, async {
        let fake = FakeAnthropic::start_then(vec![], Some(Step::server_error())).await;
        let e = anthropic_provider(&fake, true)
            .complete(&one_turn_request("hi"))
            .await
            .expect_err("500 forever");
        let text = e.to_string();
        assert!(text.contains("gave up after 4 attempts"), "{text}");
        assert!(
            text.contains("HTTP 500 api_error: Internal server error"),
            "{text}"
        );
        assert!(!text.contains("sk-ant-test-key"));
        assert!(!format!("{e:?}").contains("sk-ant-test-key"));
        assert!(e.is_unavailable());
        assert_eq!(fake.requests().len(), 4);
    })
    .await
}

#[tokio::test]
async fn an_invalid_request_is_refused_with_400_and_not_retried() {
    within(20, async {
        let fake = FakeAnthropic::start(vec![fa::Reply::text("never").into()]).await;
        let client = AnthropicClient::new(anthropic_config(&fake, false)).expect("client");
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [{"type": "text", "text": "forgot the result"}]}
            ]
        });
        let e = client.send_body(&body).await.expect_err("refused");
        match &e {
            LlmError::Api { status: 400, error_type, message, .. } => {
                assert_eq!(error_type, "invalid_request_error");
                assert!(message.contains("`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1"), "{message}");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert_eq!(fake.requests().len(), 1);
        assert_eq!(fake.remaining(), 1);
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The loop

const GREET: &str = "fn greet() -> &'static str {\n    \"hello\"\n}\n";

/// The scripted session: view, edit, run, answer in the requested format.
fn session_script() -> Vec<(&'static str, Value)> {
    vec![
        (
            "str_replace_based_edit_tool",
            json!({"command": "view", "path": "/workspace/src/lib.rs"}),
        ),
        (
            "str_replace_based_edit_tool",
            json!({"command": "str_replace", "path": "/workspace/src/lib.rs", "old_str": "\"hello\"", "new_str": "\"hello, world\""}),
        ),
        ("bash", json!({"command": "cat src/lib.rs"})),
    ]
}

const FINAL: &str = "The greeting now names the world.\n\nTITLE: Greet the world\nSUMMARY:\nChanged `greet` to return \"hello, world\" and checked the file.";

fn anthropic_script() -> Vec<Step> {
    let mut s: Vec<Step> = session_script()
        .into_iter()
        .map(|(n, i)| fa::Reply::tool(n, i).into())
        .collect();
    s.push(fa::Reply::text(FINAL).into());
    s
}

fn assert_session_outcome(outcome: &AgentOutcome, events: &[RunEvent], file: Option<String>) {
    assert_eq!(outcome.stop, StopReason::Finished, "{outcome:#?}");
    assert_eq!(outcome.title, "Greet the world");
    assert!(outcome.summary.starts_with("Changed `greet`"));
    assert_eq!(outcome.turns, 4);
    assert!(outcome.usage.output_tokens > 0);
    assert_eq!(
        file.as_deref(),
        Some("fn greet() -> &'static str {\n    \"hello, world\"\n}\n")
    );

    let progress = progress_messages(events);
    assert_eq!(progress[0], "turn 1: view /workspace/src/lib.rs");
    assert_eq!(progress[1], "turn 2: str_replace /workspace/src/lib.rs");
    assert_eq!(progress[2], "turn 3: bash `cat src/lib.rs`");
    assert_eq!(progress[3], "turn 4: final answer");
    let tools: Vec<(&str, &str, Option<i64>)> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Tool {
                name,
                output,
                exit_code,
                duration_ms,
                ..
            } => {
                assert!(duration_ms.is_some());
                Some((name.as_str(), output.as_str(), *exit_code))
            }
            _ => None,
        })
        .collect();
    assert_eq!(tools.len(), 3);
    assert!(
        tools[0].1.contains("     2\t    \"hello\""),
        "{}",
        tools[0].1
    );
    assert!(tools[1].1.contains("has been edited"));
    assert_eq!(tools[2].0, "bash");
    assert_eq!(tools[2].2, Some(0));
    assert!(tools[2].1.contains("hello, world"));
    assert!(events.iter().any(
        |e| matches!(e, RunEvent::AiMessage { text } if text.contains("TITLE: Greet the world"))
    ));
}

#[tokio::test]
async fn scripted_session_views_edits_and_runs_in_memory_with_events() {
    within(30, async {
        let fake = FakeAnthropic::start(anthropic_script()).await;
        let ws = MemoryWorkspace::with_file("src/lib.rs", GREET);
        let (outcome, events) =
            run_agent(anthropic_provider(&fake, true), AgentConfig::default(), &ws).await;
        assert_session_outcome(&outcome, &events, ws.file("src/lib.rs"));
        assert!(outcome.cost_usd.is_some_and(|c| c > 0.0));
        // Every tool_use was answered in the next turn (the fake would have refused otherwise).
        assert!(fake.requests().iter().all(|r| r.status == 200));
        assert_eq!(fake.remaining(), 0);
    })
    .await
}

#[tokio::test]
async fn the_openai_compatible_provider_passes_the_same_scripted_session() {
    within(30, async {
        let mut script: Vec<fo::Step> = session_script()
            .into_iter()
            .map(|(n, i)| fo::Reply::tool(n, i).into())
            .collect();
        script.push(fo::Reply::text(FINAL).into());
        let fake = FakeOpenAi::start(script).await;
        let ws = MemoryWorkspace::with_file("src/lib.rs", GREET);
        let (outcome, events) =
            run_agent(openai_provider(&fake), AgentConfig::default(), &ws).await;
        assert_session_outcome(&outcome, &events, ws.file("src/lib.rs"));
        // No price for the fake model: the cost is unknown, not a crash.
        assert_eq!(outcome.cost_usd, None);
        let reqs = fake.requests();
        assert!(
            reqs.iter().all(|r| r.status == 200),
            "{:?}",
            reqs.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        assert_eq!(reqs[0].headers["authorization"], "Bearer sk-openai-test");
        let last = &reqs[3].body["messages"];
        assert_eq!(last[0]["role"], "system");
        assert_eq!(
            last[2]["tool_calls"][0]["function"]["name"],
            "str_replace_based_edit_tool"
        );
        assert_eq!(last[3]["role"], "tool");
    })
    .await
}

#[tokio::test]
async fn anthropic_overloaded_after_retries_falls_back_to_the_openai_provider() {
    within(30, async {
        let anthropic = FakeAnthropic::start_then(vec![], Some(Step::overloaded())).await;
        let mut script: Vec<fo::Step> = session_script()
            .into_iter()
            .map(|(n, i)| fo::Reply::tool(n, i).into())
            .collect();
        script.push(fo::Reply::text(FINAL).into());
        let openai = FakeOpenAi::start(script).await;
        let provider = Arc::new(FallbackProvider::new(
            anthropic_provider(&anthropic, true),
            openai_provider(&openai),
        ));
        let ws = MemoryWorkspace::with_file("src/lib.rs", GREET);
        let (outcome, _) = run_agent(provider, AgentConfig::default(), &ws).await;
        assert_eq!(outcome.stop, StopReason::Finished);
        assert_eq!(outcome.turns, 4);
        // Anthropic was tried once (4 attempts) and not again after the switch.
        assert_eq!(anthropic.requests().len(), 4);
        assert_eq!(openai.requests().len(), 4);
    })
    .await
}

#[tokio::test]
async fn a_lasting_500_ends_the_run_in_an_error_event_not_a_hang() {
    within(20, async {
        let fake = FakeAnthropic::start_then(vec![], Some(Step::server_error())).await;
        let ws = MemoryWorkspace::default();
        let (outcome, events) =
            run_agent(anthropic_provider(&fake, true), AgentConfig::default(), &ws).await;
        match &outcome.stop {
            StopReason::Failed(m) => assert!(m.contains("HTTP 500"), "{m}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        let errors: Vec<&String> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Error { message } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("The agent failed") && errors[0].contains("HTTP 500"));
        assert_eq!(outcome.title, "Make greet say hello to the world");
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Budgets: each ends the run with its own message and keeps the changes.

fn create_note() -> Step {
    fa::Reply::edit(json!({"command": "create", "path": "NOTES.md", "file_text": "kept\n"})).into()
}

async fn budget_run(
    script: Vec<Step>,
    budgets: Budgets,
    expected: &str,
) -> (AgentOutcome, Vec<RunEvent>) {
    let fake = FakeAnthropic::start(script).await;
    let ws = MemoryWorkspace::default();
    let config = AgentConfig {
        budgets,
        ..AgentConfig::default()
    };
    let (outcome, events) = run_agent(anthropic_provider(&fake, true), config, &ws).await;
    match &outcome.stop {
        StopReason::BudgetHit(kind) => assert_eq!(kind.name(), expected, "{outcome:#?}"),
        other => panic!("expected budget {expected}, got {other:?}"),
    }
    assert_eq!(
        ws.file("NOTES.md").as_deref(),
        Some("kept\n"),
        "the change made before the limit is kept"
    );
    let last = progress_messages(&events)
        .pop()
        .expect("a final progress event");
    assert!(last.starts_with("stopped: "), "{last}");
    assert!(last.contains("the changes made so far are kept"), "{last}");
    assert!(outcome.summary.contains(&outcome.stop.message()));
    assert!(fake.requests().iter().all(|r| r.status == 200));
    (outcome, events)
}

/// The usage of a run of one call, to place limits between one call and two.
async fn one_call() -> AgentOutcome {
    let probe = FakeAnthropic::start(vec![fa::Reply::text("hi").into()]).await;
    let ws = MemoryWorkspace::default();
    run_agent(
        anthropic_provider(&probe, true),
        AgentConfig::default(),
        &ws,
    )
    .await
    .0
}

#[tokio::test]
async fn the_turn_budget_stops_the_run_and_says_so() {
    within(20, async {
        let script = vec![
            create_note(),
            fa::Reply::bash("ls").into(),
            fa::Reply::bash("ls -la").into(),
        ];
        let budgets = Budgets {
            max_turns: 2,
            ..Budgets::default()
        };
        let (outcome, events) = budget_run(script, budgets, "turns").await;
        assert_eq!(outcome.turns, 2);
        assert!(progress_messages(&events)
            .last()
            .unwrap()
            .contains("the turn limit (2 model calls) was reached"));
    })
    .await
}

#[tokio::test]
async fn replies_cut_at_the_output_limit_stop_the_run_and_say_so() {
    within(20, async {
        let cut = || -> Step {
            fa::Reply::edit(
                json!({"command": "create", "path": "big.txt", "file_text": "x".repeat(200)}),
            )
            .cut_at_max_tokens()
            .into()
        };
        let budgets = Budgets {
            max_output_tokens_per_call: 64,
            ..Budgets::default()
        };
        let (_, events) = budget_run(
            vec![create_note(), cut(), cut()],
            budgets,
            "output_tokens_per_call",
        )
        .await;
        assert!(progress_messages(&events)
            .last()
            .unwrap()
            .contains("output limit of 64 tokens per call"));
    })
    .await
}

#[tokio::test]
async fn the_token_budget_stops_the_run_and_says_so() {
    within(20, async {
        // The limit sits between one call's tokens and two calls'.
        let one = one_call().await;
        let per_call = one.usage.total_input() + one.usage.output_tokens;
        let budgets = Budgets {
            max_total_tokens: Some(per_call * 3 / 2),
            ..Budgets::default()
        };
        let script = vec![
            create_note(),
            fa::Reply::bash("ls").into(),
            fa::Reply::bash("ls -la").into(),
            fa::Reply::bash("pwd").into(),
        ];
        let (_, events) = budget_run(script, budgets, "total_tokens").await;
        assert!(progress_messages(&events)
            .last()
            .unwrap()
            .contains("the token budget was used up"));
    })
    .await
}

#[tokio::test]
async fn the_cost_budget_stops_the_run_and_says_so() {
    within(20, async {
        let one = one_call().await.cost_usd.expect("priced model");
        let budgets = Budgets {
            max_cost_usd: Some(one * 1.5),
            ..Budgets::default()
        };
        let script = vec![
            create_note(),
            fa::Reply::bash("ls").into(),
            fa::Reply::bash("ls -la").into(),
            fa::Reply::bash("pwd").into(),
        ];
        let (outcome, events) = budget_run(script, budgets, "cost").await;
        assert!(outcome.cost_usd.unwrap() >= one * 1.5);
        assert!(progress_messages(&events)
            .last()
            .unwrap()
            .contains("the cost budget was used up"));
    })
    .await
}

#[tokio::test]
async fn the_time_limit_stops_a_long_command_and_the_run() {
    within(20, async {
        let budgets = Budgets {
            max_duration: Duration::from_millis(700),
            ..Budgets::default()
        };
        let script = vec![
            create_note(),
            fa::Reply::bash("sleep 30").into(),
            fa::Reply::bash("ls").into(),
        ];
        let started = Instant::now();
        let (_, events) = budget_run(script, budgets, "wall_clock").await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(progress_messages(&events)
            .last()
            .unwrap()
            .contains("the time limit of 700ms was reached"));
    })
    .await
}

#[tokio::test]
async fn the_no_progress_watchdog_stops_repeated_identical_calls() {
    within(20, async {
        let script = vec![
            create_note(),
            fa::Reply::bash("false").into(),
            fa::Reply::bash("false").into(),
            fa::Reply::bash("false").into(),
            fa::Reply::bash("false").into(),
        ];
        let (outcome, events) = budget_run(script, Budgets::default(), "no_progress").await;
        assert_eq!(outcome.turns, 4);
        assert!(progress_messages(&events)
            .last()
            .unwrap()
            .contains("the same tool calls were made 3 turns in a row"));
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Caching

/// Index of the last unit carrying a breakpoint.
fn last_breakpoint(units: &[(String, bool)]) -> Option<usize> {
    units.iter().rposition(|(_, bp)| *bp)
}

#[tokio::test]
async fn each_request_of_a_ten_turn_session_shares_a_cached_prefix_with_the_one_before() {
    within(30, async {
        let mut script: Vec<Step> = (0..9)
            .map(|i| {
                if i % 3 == 0 {
                    fa::Reply::edit(json!({"command": "create", "path": format!("f{i}.txt"), "file_text": format!("file {i}\n")})).into()
                } else {
                    fa::Reply::bash(&format!("echo step {i}")).with_text(&format!("Step {i}.")).into()
                }
            })
            .collect();
        script.push(fa::Reply::text(FINAL).into());
        let fake = FakeAnthropic::start(script).await;
        let ws = MemoryWorkspace::default();
        let provider = anthropic_provider(&fake, true);
        let (outcome, _) = run_agent(provider, AgentConfig::default(), &ws).await;
        assert_eq!(outcome.stop, StopReason::Finished);
        assert_eq!(outcome.turns, 10);

        let bodies = fake.answered_bodies();
        assert_eq!(bodies.len(), 10);
        for (n, pair) in bodies.windows(2).enumerate() {
            let (prev, next) = (fa::cache_units(&pair[0]), fa::cache_units(&pair[1]));
            let p = last_breakpoint(&prev).expect("the previous request has breakpoints");
            assert!(next.len() > p, "request {} is shorter than the cached prefix", n + 1);
            for k in 0..=p {
                assert_eq!(prev[k].0, next[k].0, "request {} differs from request {n} at unit {k}", n + 1);
            }
            assert!(next[p].1, "request {} has no breakpoint where request {n} wrote the cache", n + 1);
            assert!(anthropic::count_cache_breakpoints(&pair[1]) <= 4);
        }
        let share = outcome.cache_read_share();
        assert!(share > 0.5, "cache read share {share}");
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The acceptance session in a real Docker sandbox.

/// The tools called directly in the sandbox: directory view, missing file, nested create,
/// ambiguous str_replace, failing command, command past its time limit.
async fn sandbox_tool_results(ws: &dyn Workspace) -> [ToolResult; 6] {
    let limits = ToolLimits::default();
    let editor = "str_replace_based_edit_tool";
    let t = Duration::from_secs(30);
    [
        run_tool(
            ws,
            editor,
            &json!({"command": "view", "path": "/workspace"}),
            &limits,
            t,
        )
        .await,
        run_tool(
            ws,
            editor,
            &json!({"command": "view", "path": "nope.rs"}),
            &limits,
            t,
        )
        .await,
        run_tool(
            ws,
            editor,
            &json!({"command": "create", "path": "a/b/c.txt", "file_text": "x\nx\n"}),
            &limits,
            t,
        )
        .await,
        run_tool(
            ws,
            editor,
            &json!({"command": "str_replace", "path": "a/b/c.txt", "old_str": "x", "new_str": "y"}),
            &limits,
            t,
        )
        .await,
        run_tool(
            ws,
            "bash",
            &json!({"command": "echo oops >&2; exit 3"}),
            &limits,
            t,
        )
        .await,
        run_tool(
            ws,
            "bash",
            &json!({"command": "sleep 5"}),
            &limits,
            Duration::from_secs(1),
        )
        .await,
    ]
}

#[tokio::test]
async fn a_scripted_session_views_edits_and_runs_a_command_in_a_real_sandbox() {
    within(240, async {
        // Skips (saying why) without Docker or the image, except with CI=true, where it fails.
        let Some(sandboxes) = support::docker::sandboxes().await else {
            return;
        };
        let repo = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(repo.path().join("src")).expect("src dir");
        std::fs::write(repo.path().join("src/lib.rs"), GREET).expect("write");
        let run_id = format!("agent-test-{}", std::process::id());
        let sandbox = sandboxes
            .create(&run_id, repo.path())
            .await
            .expect("sandbox");

        let fake = FakeAnthropic::start(anthropic_script()).await;
        let (outcome, events) = run_agent(
            anthropic_provider(&fake, true),
            AgentConfig::default(),
            &sandbox,
        )
        .await;
        let tools = sandbox_tool_results(&sandbox).await;
        let file = sandbox
            .read_file("src/lib.rs")
            .await
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let back = tempfile::tempdir().expect("temp dir");
        sandbox.copy_out(back.path()).await.expect("copy out");
        sandbox.destroy().await.expect("destroy");

        assert_session_outcome(&outcome, &events, file);
        let [dir, missing, nested, twice, failing, slow] = tools;
        assert!(
            !dir.is_error && dir.content.contains("src/lib.rs"),
            "{dir:?}"
        );
        assert!(
            missing.is_error && missing.content.contains("nope.rs"),
            "{missing:?}"
        );
        assert!(nested.changed_file && !nested.is_error, "{nested:?}");
        assert!(
            twice.is_error && twice.content.contains("occurs 2 times"),
            "{twice:?}"
        );
        assert_eq!(failing.exit_code, Some(3));
        assert!(failing.content.contains("oops") && failing.content.contains("[exit code 3]"));
        assert!(
            slow.is_error && slow.content.contains("killed after 1s"),
            "{slow:?}"
        );
        assert_eq!(
            std::fs::read_to_string(back.path().join("a/b/c.txt"))
                .expect("nested file copied back"),
            "x\nx\n"
        );
        assert_eq!(
            std::fs::read_to_string(back.path().join("src/lib.rs")).expect("copied back"),
            "fn greet() -> &'static str {\n    \"hello, world\"\n}\n"
        );
    })
    .await
}

#[tokio::test]
async fn an_empty_text_block_in_a_reply_is_not_sent_back() {
    within(20, async {
        let fake = FakeAnthropic::start(vec![
            fa::Reply::bash("ls").with_text("").into(),
            fa::Reply::text(FINAL).into(),
        ])
        .await;
        let ws = MemoryWorkspace::default();
        let (outcome, _) =
            run_agent(anthropic_provider(&fake, true), AgentConfig::default(), &ws).await;
        assert_eq!(outcome.stop, StopReason::Finished, "{outcome:#?}");
        assert!(fake.requests().iter().all(|r| r.status == 200));
        let second = &fake.answered_bodies()[1];
        assert_eq!(
            second["messages"][1]["content"].as_array().map(Vec::len),
            Some(1)
        );
    })
    .await
}

#[tokio::test]
async fn a_model_call_that_hangs_ends_at_the_time_limit() {
    within(20, async {
        let budgets = Budgets {
            max_duration: Duration::from_millis(800),
            ..Budgets::default()
        };
        let script = vec![create_note(), Step::Stall(Duration::from_secs(60))];
        let fake = FakeAnthropic::start(script).await;
        let ws = MemoryWorkspace::default();
        let config = AgentConfig {
            budgets,
            ..AgentConfig::default()
        };
        let started = Instant::now();
        let (outcome, events) = run_agent(anthropic_provider(&fake, true), config, &ws).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&outcome.stop, StopReason::BudgetHit(k) if k.name() == "wall_clock"),
            "{outcome:#?}"
        );
        assert_eq!(ws.file("NOTES.md").as_deref(), Some("kept\n"));
        assert!(progress_messages(&events)
            .last()
            .unwrap()
            .contains("the time limit of 800ms was reached"));
    })
    .await
}
