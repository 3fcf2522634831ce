//! A thread's earlier turns for agents that want them: one query of the thread index, completed
//! runs only, oldest first, within a turn and character budget.

use super::executor::Turn;
use crate::limits::{MAX_HISTORY_CHARS, MAX_HISTORY_TURNS};
use crate::state::ExecutionState;
use crate::store::{RunRecord, StorageError, Store};
use serde_json::Value;

/// The answer text of a completed run: its result's `text` (the `llm` agent), else `reply`
/// (`echo`), else the result as JSON.
pub fn answer_text(result: &Value) -> String {
    match result.get("text").or_else(|| result.get("reply")) {
        Some(Value::String(s)) => s.clone(),
        _ => result.to_string(),
    }
}

/// The earlier completed turns of `run`'s thread (the run itself excluded), oldest first,
/// keeping the newest turns that fit [`MAX_HISTORY_TURNS`] and [`MAX_HISTORY_CHARS`].
pub async fn thread_turns(store: &dyn Store, run: &RunRecord) -> Result<Vec<Turn>, StorageError> {
    let page = store
        .list_runs(
            run.owner(),
            Some(&run.thread_id),
            MAX_HISTORY_TURNS + 1,
            None,
        )
        .await?;
    Ok(within_budget(&page.items, &run.run_id))
}

/// Newest-first runs → the turns that fit, oldest first.
fn within_budget(newest_first: &[RunRecord], exclude: &str) -> Vec<Turn> {
    let mut turns = Vec::new();
    let mut chars = 0;
    for r in newest_first {
        if r.run_id == exclude || r.state != ExecutionState::Completed {
            continue;
        }
        let Some(result) = &r.result else { continue };
        let turn = Turn {
            user: r.request.clone(),
            assistant: answer_text(result),
        };
        chars += turn.user.chars().count() + turn.assistant.chars().count();
        if chars > MAX_HISTORY_CHARS || turns.len() == MAX_HISTORY_TURNS {
            break;
        }
        turns.push(turn);
    }
    turns.reverse();
    turns
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(id: &str, state: ExecutionState, request: &str, answer: &str) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            state,
            request: request.into(),
            result: Some(json!({ "text": answer })),
            ..Default::default()
        }
    }

    /// Completed runs only, the current one excluded, oldest first.
    #[test]
    fn turns_are_completed_runs_oldest_first() {
        let runs = [
            run("r4", ExecutionState::Running, "now", ""),
            run("r3", ExecutionState::Completed, "q3", "a3"),
            run("r2", ExecutionState::Failed, "q2", "a2"),
            run("r1", ExecutionState::Completed, "q1", "a1"),
        ];
        let turns = within_budget(&runs, "r4");
        let users: Vec<_> = turns.iter().map(|t| t.user.as_str()).collect();
        assert_eq!(users, ["q1", "q3"]);
        assert_eq!(turns[1].assistant, "a3");
    }

    /// Past the character budget the oldest turns are dropped, the newest kept.
    #[test]
    fn oldest_turns_are_dropped_first() {
        let big = "x".repeat(MAX_HISTORY_CHARS / 2);
        let runs = [
            run("r3", ExecutionState::Completed, "new", &big),
            run("r2", ExecutionState::Completed, "mid", &big),
            run("r1", ExecutionState::Completed, "old", "a"),
        ];
        let turns = within_budget(&runs, "none");
        let users: Vec<_> = turns.iter().map(|t| t.user.as_str()).collect();
        assert_eq!(users, ["new"]);
    }
}
