//! The limits of one agent run and their checks: turns, output tokens per call, total tokens,
//! cost, wall-clock time, and a no-progress watchdog. Each limit has its own value and message so
//! a run never ends silently or ambiguously.

use std::time::Duration;

use crate::run_event::Usage;

#[derive(Debug, Clone, PartialEq)]
pub struct Budgets {
    /// Model calls in a run.
    pub max_turns: u32,
    /// `max_tokens` of each call.
    pub max_output_tokens_per_call: u32,
    /// Replies cut at `max_output_tokens_per_call` in a row before the run stops.
    pub max_truncated_replies: u32,
    /// All tokens (input of every kind plus output) of the run.
    pub max_total_tokens: Option<u64>,
    pub max_cost_usd: Option<f64>,
    pub max_duration: Duration,
    /// Turns in a row with exactly the same tool calls.
    pub max_repeated_turns: u32,
    /// Turns in a row in which every tool call failed.
    pub max_failing_turns: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            max_turns: 50,
            max_output_tokens_per_call: 16_000,
            max_truncated_replies: 2,
            max_total_tokens: Some(5_000_000),
            max_cost_usd: Some(10.0),
            max_duration: Duration::from_secs(30 * 60),
            max_repeated_turns: 3,
            max_failing_turns: 6,
        }
    }
}

/// Which limit ended a run.
#[derive(Debug, Clone, PartialEq)]
pub enum BudgetKind {
    Turns { limit: u32 },
    OutputTokensPerCall { limit: u32 },
    TotalTokens { limit: u64, used: u64 },
    Cost { limit_usd: f64, spent_usd: f64 },
    WallClock { limit: Duration },
    NoProgress { detail: String },
}

impl BudgetKind {
    /// A stable short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            BudgetKind::Turns { .. } => "turns",
            BudgetKind::OutputTokensPerCall { .. } => "output_tokens_per_call",
            BudgetKind::TotalTokens { .. } => "total_tokens",
            BudgetKind::Cost { .. } => "cost",
            BudgetKind::WallClock { .. } => "wall_clock",
            BudgetKind::NoProgress { .. } => "no_progress",
        }
    }
}

impl std::fmt::Display for BudgetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BudgetKind::Turns { limit } => {
                write!(f, "the turn limit ({limit} model calls) was reached")
            }
            BudgetKind::OutputTokensPerCall { limit } => write!(
                f,
                "the model's replies kept hitting the output limit of {limit} tokens per call"
            ),
            BudgetKind::TotalTokens { limit, used } => {
                write!(f, "the token budget was used up ({used} of {limit} tokens)")
            }
            BudgetKind::Cost {
                limit_usd,
                spent_usd,
            } => write!(
                f,
                "the cost budget was used up (${spent_usd:.2} of ${limit_usd:.2})"
            ),
            BudgetKind::WallClock { limit } => {
                write!(f, "the time limit of {}s was reached", limit.as_secs())
            }
            BudgetKind::NoProgress { detail } => {
                write!(f, "the agent stopped making progress: {detail}")
            }
        }
    }
}

/// Checks the token and cost budgets after a reply.
pub fn check_spend(b: &Budgets, usage: &Usage, cost_usd: Option<f64>) -> Option<BudgetKind> {
    let used = usage.total_input() + usage.output_tokens;
    if let Some(limit) = b.max_total_tokens {
        if used >= limit {
            return Some(BudgetKind::TotalTokens { limit, used });
        }
    }
    if let (Some(limit_usd), Some(spent_usd)) = (b.max_cost_usd, cost_usd) {
        if spent_usd >= limit_usd {
            return Some(BudgetKind::Cost {
                limit_usd,
                spent_usd,
            });
        }
    }
    None
}

/// Watches for a loop that goes nowhere: the same tool calls turn after turn, or turn after turn
/// of nothing but failing calls.
#[derive(Debug, Default)]
pub struct ProgressWatchdog {
    last_calls: Option<String>,
    repeated: u32,
    failing: u32,
}

impl ProgressWatchdog {
    /// Records one turn: a fingerprint of its tool calls, whether any call changed a file, and
    /// whether every call failed.
    pub fn observe(
        &mut self,
        b: &Budgets,
        calls_fingerprint: String,
        changed_file: bool,
        all_failed: bool,
    ) -> Option<BudgetKind> {
        if !changed_file && self.last_calls.as_deref() == Some(calls_fingerprint.as_str()) {
            self.repeated += 1;
        } else {
            self.repeated = 1;
        }
        self.last_calls = Some(calls_fingerprint);
        self.failing = if all_failed { self.failing + 1 } else { 0 };
        if self.repeated >= b.max_repeated_turns.max(2) {
            return Some(BudgetKind::NoProgress {
                detail: format!(
                    "the same tool calls were made {} turns in a row",
                    self.repeated
                ),
            });
        }
        if self.failing >= b.max_failing_turns.max(1) {
            return Some(BudgetKind::NoProgress {
                detail: format!("every tool call failed for {} turns in a row", self.failing),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_limits_trigger_at_their_threshold_with_their_own_kind() {
        let b = Budgets {
            max_total_tokens: Some(100),
            max_cost_usd: Some(1.0),
            ..Budgets::default()
        };
        let u = Usage {
            input_tokens: 60,
            output_tokens: 30,
            ..Usage::default()
        };
        assert_eq!(check_spend(&b, &u, Some(0.5)), None);
        let u2 = Usage {
            output_tokens: 40,
            ..u
        };
        assert_eq!(
            check_spend(&b, &u2, None).map(|k| k.name()),
            Some("total_tokens")
        );
        assert_eq!(
            check_spend(&b, &u, Some(1.5)).map(|k| k.name()),
            Some("cost")
        );
        // An unknown price never trips the cost budget.
        assert_eq!(check_spend(&b, &u, None), None);
    }

    #[test]
    fn watchdog_trips_on_repeats_and_on_failing_streaks_but_not_on_edits() {
        let b = Budgets {
            max_repeated_turns: 3,
            max_failing_turns: 2,
            ..Budgets::default()
        };
        let mut w = ProgressWatchdog::default();
        assert!(w.observe(&b, "ls".into(), false, false).is_none());
        assert!(w.observe(&b, "ls".into(), false, false).is_none());
        let k = w.observe(&b, "ls".into(), false, false).unwrap();
        assert!(k.to_string().contains("same tool calls"));

        let mut w = ProgressWatchdog::default();
        for _ in 0..5 {
            assert!(w.observe(&b, "edit".into(), true, false).is_none());
        }
        assert!(w.observe(&b, "a".into(), false, true).is_none());
        assert!(w
            .observe(&b, "b".into(), false, true)
            .unwrap()
            .to_string()
            .contains("failed"));
    }

    #[test]
    fn every_budget_has_its_own_message() {
        let kinds = [
            BudgetKind::Turns { limit: 3 },
            BudgetKind::OutputTokensPerCall { limit: 10 },
            BudgetKind::TotalTokens { limit: 1, used: 2 },
            BudgetKind::Cost {
                limit_usd: 1.0,
                spent_usd: 2.0,
            },
            BudgetKind::WallClock {
                limit: Duration::from_secs(5),
            },
            BudgetKind::NoProgress { detail: "x".into() },
        ];
        let msgs: std::collections::HashSet<String> = kinds.iter().map(|k| k.to_string()).collect();
        assert_eq!(msgs.len(), kinds.len());
    }
}
