//! The limits of one agent run and their checks: turns, output tokens per call, total tokens,
//! cost, wall-clock time, and a no-progress watchdog. Each limit has its own value and message so
//! a run never ends silently or ambiguously.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
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
    /// Turns in a row that bring nothing new (calls and outputs all seen before).
    pub max_stale_turns: u32,
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
            max_stale_turns: 4,
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
            BudgetKind::WallClock { limit } if limit.as_secs() == 0 => {
                write!(f, "the time limit of {}ms was reached", limit.as_millis())
            }
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

/// One turn's tool activity, as the watchdog sees it.
#[derive(Debug, Clone, Default)]
pub struct TurnActivity {
    /// Each call with its result, as text (`name input => output`).
    pub exchanges: Vec<String>,
    /// A call changed a file.
    pub changed_file: bool,
    /// Every call failed.
    pub all_failed: bool,
}

/// Watches for a loop that goes nowhere: the same tool calls turn after turn; turns that bring
/// nothing new (every call and its output seen before, no file changed), such as a cycle
/// between two commands; or turn after turn of nothing but failing calls.
#[derive(Debug, Default)]
pub struct ProgressWatchdog {
    last_calls: Option<Vec<String>>,
    repeated: u32,
    seen: HashSet<u64>,
    stale: u32,
    failing: u32,
}

impl ProgressWatchdog {
    pub fn observe(&mut self, b: &Budgets, turn: &TurnActivity) -> Option<BudgetKind> {
        if !turn.changed_file && self.last_calls.as_ref() == Some(&turn.exchanges) {
            self.repeated += 1;
        } else {
            self.repeated = 1;
        }
        self.last_calls = Some(turn.exchanges.clone());
        let mut new_info = turn.changed_file;
        for e in &turn.exchanges {
            let mut h = DefaultHasher::new();
            e.hash(&mut h);
            new_info |= self.seen.insert(h.finish());
        }
        self.stale = if new_info { 0 } else { self.stale + 1 };
        self.failing = if turn.all_failed { self.failing + 1 } else { 0 };
        if self.repeated >= b.max_repeated_turns.max(2) {
            return Some(BudgetKind::NoProgress {
                detail: format!(
                    "the same tool calls were made {} turns in a row",
                    self.repeated
                ),
            });
        }
        if self.stale >= b.max_stale_turns.max(2) {
            return Some(BudgetKind::NoProgress {
                detail: format!(
                    "{} turns in a row repeated earlier calls and outputs without changing a file",
                    self.stale
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

    fn turn(calls: &[&str], changed_file: bool, all_failed: bool) -> TurnActivity {
        TurnActivity {
            exchanges: calls.iter().map(|c| c.to_string()).collect(),
            changed_file,
            all_failed,
        }
    }

    #[test]
    fn watchdog_trips_on_repeats_cycles_and_failing_streaks_but_not_on_edits() {
        let b = Budgets {
            max_repeated_turns: 3,
            max_stale_turns: 3,
            max_failing_turns: 2,
            ..Budgets::default()
        };
        let mut w = ProgressWatchdog::default();
        assert!(w.observe(&b, &turn(&["ls => a"], false, false)).is_none());
        assert!(w.observe(&b, &turn(&["ls => a"], false, false)).is_none());
        let k = w.observe(&b, &turn(&["ls => a"], false, false)).unwrap();
        assert!(k.to_string().contains("same tool calls"));

        let mut w = ProgressWatchdog::default();
        for _ in 0..5 {
            assert!(w.observe(&b, &turn(&["edit => ok"], true, false)).is_none());
        }

        // A cycle between two commands whose outputs never change.
        let mut w = ProgressWatchdog::default();
        assert!(w.observe(&b, &turn(&["a => 1"], false, false)).is_none());
        assert!(w.observe(&b, &turn(&["b => 2"], false, false)).is_none());
        assert!(w.observe(&b, &turn(&["a => 1"], false, false)).is_none());
        assert!(w.observe(&b, &turn(&["b => 2"], false, false)).is_none());
        let k = w.observe(&b, &turn(&["a => 1"], false, false)).unwrap();
        assert!(k.to_string().contains("repeated earlier calls"), "{k}");

        let mut w = ProgressWatchdog::default();
        assert!(w.observe(&b, &turn(&["x => e1"], false, true)).is_none());
        let k = w.observe(&b, &turn(&["y => e2"], false, true)).unwrap();
        assert!(k.to_string().contains("failed"));
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
