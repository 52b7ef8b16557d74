//! The agent loop: ask the model, run its tool calls in the workspace, answer every tool_use with
//! a tool_result in the next user turn, until the model finishes, a budget is hit, or the model
//! cannot be reached. Every step becomes a run event; the outcome says how the run ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::time::timeout_at;

use super::budget::{check_spend, BudgetKind, Budgets, ProgressWatchdog, TurnActivity};
use super::llm::types::{ClientTool, ContentBlock, Message, ModelRequest, Role, StopKind};
use super::llm::ModelProvider;
use super::pricing::PriceTable;
use super::prompt::{self, AgentTask};
use super::tools::{self, cut_output, describe_call, ToolLimits};
use super::workspace::Workspace;
use crate::run_event::{EventSender, RunEvent, Usage};

/// Settings of the loop.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    pub budgets: Budgets,
    pub tools: ToolLimits,
    pub prices: PriceTable,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The model ended its turn without a tool call.
    Finished,
    /// A limit stopped the run; what was done is kept.
    BudgetHit(BudgetKind),
    /// The model could not be reached or refused.
    Failed(String),
}

impl StopReason {
    pub fn message(&self) -> String {
        match self {
            StopReason::Finished => "the agent finished".into(),
            StopReason::BudgetHit(k) => format!("stopped: {k}; the changes made so far are kept"),
            StopReason::Failed(m) => format!("the agent failed: {m}"),
        }
    }
}

/// What a run produced. Whether files changed is for the caller to find out (it diffs the tree);
/// a run that changed nothing is an answer, and `final_text` / `summary` is what gets posted.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutcome {
    pub stop: StopReason,
    /// The PR title (from the model's `TITLE:` line, or from the request).
    pub title: String,
    /// The PR summary / the answer.
    pub summary: String,
    /// The model's last text.
    pub final_text: String,
    pub usage: Usage,
    /// `None` when a model used has no price in the table.
    pub cost_usd: Option<f64>,
    /// Model calls made.
    pub turns: u32,
    /// The last steps, one line each, for logs and failure reports.
    pub transcript: Vec<String>,
    pub duration: Duration,
}

impl AgentOutcome {
    /// Share of input tokens read from the prompt cache.
    pub fn cache_read_share(&self) -> f64 {
        self.usage.cache_read_share()
    }

    /// What a run that changed no file posts (the one answer rule, for GitHub runs and
    /// `backspace run` alike): the summary (the final reply with its `TITLE:` and `SUMMARY:`
    /// read out), or the last text when the summary is empty; and why the agent stopped, when
    /// it stopped early and the summary does not say so already.
    pub fn answer(&self) -> String {
        let text = if self.summary.trim().is_empty() {
            &self.final_text
        } else {
            &self.summary
        };
        let mut answer = text.trim().to_owned();
        if self.stop != StopReason::Finished {
            let why = self.stop.message();
            if !answer.contains(&why) {
                answer.push_str(&format!("\n\n_{why}_"));
            }
        }
        answer
    }
}

const TRANSCRIPT_ENTRIES: usize = 40;
const TRANSCRIPT_LINE_CHARS: usize = 300;
/// String values in a tool event's input are cut to this.
const EVENT_INPUT_CHARS: usize = 1_000;

pub struct Agent {
    provider: Arc<dyn ModelProvider>,
    config: AgentConfig,
}

/// The state of one run.
struct Run<'a> {
    events: &'a EventSender,
    messages: Vec<Message>,
    usage: Usage,
    cost: f64,
    cost_unknown: bool,
    turns: u32,
    transcript: Vec<String>,
    last_text: String,
}

impl Run<'_> {
    fn emit(&self, e: RunEvent) {
        // A closed receiver means nobody listens any more; the run still completes.
        let _ = self.events.send(e);
    }

    fn note(&mut self, line: String) {
        self.transcript.push(cut_output(
            &line.replace('\n', " ⏎ "),
            TRANSCRIPT_LINE_CHARS,
        ));
        if self.transcript.len() > TRANSCRIPT_ENTRIES {
            self.transcript.remove(0);
        }
    }

    fn cost_usd(&self) -> Option<f64> {
        (!self.cost_unknown).then_some(self.cost)
    }
}

impl Agent {
    pub fn new(provider: Arc<dyn ModelProvider>, config: AgentConfig) -> Self {
        Agent { provider, config }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Runs the task to its end in `workspace`, sending events as it goes. Never panics on
    /// anything from outside; dropping the future cancels the run.
    pub async fn run(
        &self,
        task: &AgentTask,
        workspace: &dyn Workspace,
        events: &EventSender,
    ) -> AgentOutcome {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.budgets.max_duration;
        let mut run = Run {
            events,
            messages: vec![Message::user_text(prompt::first_user_message(task))],
            usage: Usage::default(),
            cost: 0.0,
            cost_unknown: false,
            turns: 0,
            transcript: Vec::new(),
            last_text: String::new(),
        };
        let system = prompt::system_prompt(task);
        let stop = self.turns(&mut run, &system, workspace, deadline).await;

        let report = prompt::parse_final(&run.last_text, &task.request);
        let summary = match &stop {
            StopReason::Finished => report.summary,
            other if report.parsed => format!("{}\n\n({})", report.summary, other.message()),
            other => format!("{}\n\n{}", run.last_text.trim(), other.message())
                .trim()
                .to_owned(),
        };
        let outcome = AgentOutcome {
            title: report.title,
            summary,
            final_text: run.last_text.clone(),
            usage: run.usage,
            cost_usd: run.cost_usd(),
            turns: run.turns,
            transcript: run.transcript.clone(),
            duration: started.elapsed(),
            stop,
        };
        let totals = format!(
            "{} turns, {} tokens ({:.0}% of input read from cache){}",
            outcome.turns,
            outcome.usage.total_input() + outcome.usage.output_tokens,
            outcome.cache_read_share() * 100.0,
            outcome
                .cost_usd
                .map(|c| format!(", ${c:.4}"))
                .unwrap_or_else(|| ", cost unknown".into())
        );
        match &outcome.stop {
            StopReason::Failed(m) => run.emit(RunEvent::Error {
                message: format!("The agent failed after {totals}: {m}"),
            }),
            other => run.emit(RunEvent::progress(
                "agent",
                format!("{} after {totals}", other.message()),
            )),
        }
        tracing::info!(
            stop = %outcome.stop.message(),
            turns = outcome.turns,
            input_tokens = outcome.usage.input_tokens,
            output_tokens = outcome.usage.output_tokens,
            cache_read_share = outcome.cache_read_share(),
            cost_usd = outcome.cost_usd,
            "agent run ended"
        );
        outcome
    }

    async fn turns(
        &self,
        run: &mut Run<'_>,
        system: &str,
        workspace: &dyn Workspace,
        deadline: tokio::time::Instant,
    ) -> StopReason {
        let b = &self.config.budgets;
        let wall = StopReason::BudgetHit(BudgetKind::WallClock {
            limit: b.max_duration,
        });
        let mut watchdog = ProgressWatchdog::default();
        let mut truncated_in_a_row = 0;
        loop {
            if run.turns >= b.max_turns {
                return StopReason::BudgetHit(BudgetKind::Turns { limit: b.max_turns });
            }
            if tokio::time::Instant::now() >= deadline {
                return wall;
            }
            let request = ModelRequest {
                system: system.to_owned(),
                messages: run.messages.clone(),
                max_tokens: b.max_output_tokens_per_call,
                tools: ClientTool::ALL.to_vec(),
            };
            let response = match timeout_at(deadline, self.provider.complete(&request)).await {
                Err(_) => return wall,
                Ok(Err(e)) => return StopReason::Failed(e.to_string()),
                Ok(Ok(r)) => r,
            };
            run.turns += 1;
            let turn = run.turns;
            run.usage.add(&response.usage);
            let model = if response.model.is_empty() {
                self.provider.model().to_owned()
            } else {
                response.model.clone()
            };
            match self.config.prices.price(&model) {
                Some(p) => run.cost += p.cost(&response.usage),
                None if !run.cost_unknown => {
                    tracing::warn!(model, "no price for this model; the run's cost is unknown");
                    run.cost_unknown = true;
                }
                None => {}
            }

            let text = response.text();
            if !text.is_empty() {
                run.emit(RunEvent::AiMessage { text: text.clone() });
                run.note(format!("assistant: {text}"));
                run.last_text = text;
            }
            // The API refuses empty text blocks in earlier turns.
            let mut content: Vec<ContentBlock> = response
                .content
                .iter()
                .filter(|b| !matches!(b, ContentBlock::Text { text } if text.trim().is_empty()))
                .cloned()
                .collect();
            if content.is_empty() {
                if response.stop != StopKind::MaxTokens {
                    return finished_or_refused(&response.stop);
                }
                content.push(ContentBlock::text("(no output)"));
            }
            run.messages.push(Message {
                role: Role::Assistant,
                content,
            });

            let calls: Vec<(String, String, Value)> = response
                .tool_uses()
                .map(|(id, name, input)| (id.to_owned(), name.to_owned(), input.clone()))
                .collect();
            let truncated = response.stop == StopKind::MaxTokens;
            if truncated {
                truncated_in_a_row += 1;
                if truncated_in_a_row >= b.max_truncated_replies.max(1) {
                    return StopReason::BudgetHit(BudgetKind::OutputTokensPerCall {
                        limit: b.max_output_tokens_per_call,
                    });
                }
            } else {
                truncated_in_a_row = 0;
                if calls.is_empty() {
                    run.emit(progress(turn, "final answer", run.usage, run.cost_usd()));
                    return finished_or_refused(&response.stop);
                }
            }
            if let Some(kind) = check_spend(b, &run.usage, run.cost_usd()) {
                return StopReason::BudgetHit(kind);
            }

            let action = match calls.first() {
                Some((_, name, input)) if calls.len() > 1 => {
                    format!("{} (+{} more)", describe_call(name, input), calls.len() - 1)
                }
                Some((_, name, input)) => describe_call(name, input),
                None => "reply cut off at the output limit; continuing".into(),
            };
            run.emit(progress(turn, &action, run.usage, run.cost_usd()));

            let mut results = Vec::with_capacity(calls.len() + 1);
            let mut exchanges = Vec::with_capacity(calls.len());
            let mut changed_file = false;
            let mut all_failed = !calls.is_empty();
            let mut out_of_time = false;
            for (id, name, input) in &calls {
                let result = if out_of_time {
                    tools::ToolResult::error("Not run: the run's time limit was reached.")
                } else if response.incomplete_tool_inputs.contains(id) {
                    tools::ToolResult::error(format!(
                        "This tool call was cut off at the output limit of {} tokens, so its input is incomplete and it was not run. Make smaller edits (several str_replace calls instead of one large create).",
                        b.max_output_tokens_per_call
                    ))
                } else {
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let cmd_timeout = self.config.tools.command_timeout.min(remaining);
                    let t0 = Instant::now();
                    let ran = timeout_at(
                        deadline + Duration::from_secs(5),
                        tools::run_tool(workspace, name, input, &self.config.tools, cmd_timeout),
                    )
                    .await;
                    let result = match ran {
                        Ok(r) => r,
                        Err(_) => {
                            out_of_time = true;
                            tools::ToolResult::error("Stopped: the run's time limit was reached.")
                        }
                    };
                    run.emit(RunEvent::Tool {
                        name: name.clone(),
                        input: cut_strings(input, EVENT_INPUT_CHARS),
                        output: cut_output(&result.content, self.config.tools.event_chars),
                        exit_code: result.exit_code,
                        duration_ms: Some(t0.elapsed().as_millis() as u64),
                    });
                    if tokio::time::Instant::now() >= deadline {
                        out_of_time = true;
                    }
                    result
                };
                run.note(format!(
                    "{}{} → {}",
                    describe_call(name, input),
                    if result.is_error { " (error)" } else { "" },
                    result.content
                ));
                exchanges.push(format!("{name} {input} => {}", result.content));
                changed_file |= result.changed_file;
                all_failed &= result.is_error;
                results.push(ContentBlock::ToolResult {
                    tool_use_id: id.clone(),
                    content: result.content,
                    is_error: result.is_error,
                });
            }
            if truncated {
                results.push(ContentBlock::text(format!(
                    "Your reply was cut off at the output limit of {} tokens. Continue, in smaller steps.",
                    b.max_output_tokens_per_call
                )));
            }
            run.messages.push(Message {
                role: Role::User,
                content: results,
            });
            if out_of_time {
                return wall;
            }
            if !calls.is_empty() {
                let activity = TurnActivity {
                    exchanges,
                    changed_file,
                    all_failed,
                };
                if let Some(kind) = watchdog.observe(b, &activity) {
                    return StopReason::BudgetHit(kind);
                }
            }
        }
    }
}

fn finished_or_refused(stop: &StopKind) -> StopReason {
    match stop {
        StopKind::Refusal => StopReason::Failed("the model declined the request".into()),
        _ => StopReason::Finished,
    }
}

fn progress(turn: u32, action: &str, usage: Usage, cost_usd: Option<f64>) -> RunEvent {
    RunEvent::Progress {
        stage: "agent".into(),
        message: format!("turn {turn}: {action}"),
        percentage: None,
        usage: Some(usage),
        cost_usd,
    }
}

/// A copy of a JSON value with long strings cut (a `create` carries a whole file).
fn cut_strings(v: &Value, max: usize) -> Value {
    match v {
        Value::String(s) => Value::String(cut_output(s, max)),
        Value::Array(a) => Value::Array(a.iter().map(|x| cut_strings(x, max)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), cut_strings(x, max)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The runner spawns runs on the multi-threaded runtime: the run future must be `Send`.
    #[allow(dead_code)]
    fn the_run_future_is_send(agent: &Agent, ws: &dyn Workspace, events: &EventSender) {
        let task = AgentTask::default();
        let fut = agent.run(&task, ws, events);
        assert_send(&fut);
    }

    #[test]
    fn long_strings_in_event_inputs_are_cut() {
        let v = serde_json::json!({"command": "create", "file_text": "x".repeat(5000), "n": 3});
        let cut = cut_strings(&v, 100);
        assert!(cut["file_text"].as_str().unwrap().len() < 300);
        assert_eq!(cut["command"], "create");
        assert_eq!(cut["n"], 3);
    }

    #[test]
    fn stop_reasons_have_distinct_messages() {
        assert_eq!(StopReason::Finished.message(), "the agent finished");
        let b = StopReason::BudgetHit(BudgetKind::Turns { limit: 3 }).message();
        assert!(
            b.starts_with("stopped: the turn limit") && b.ends_with("changes made so far are kept")
        );
        assert!(StopReason::Failed("x".into())
            .message()
            .contains("failed: x"));
    }
}
