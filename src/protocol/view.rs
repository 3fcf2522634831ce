//! What clients see of a run (`execution`, `executions`): never its connection or endpoint.

use super::fit::{cut_text, json_len, prefix_within};
use crate::limits::MAX_MESSAGE_BYTES;
use crate::store::{ListCursor, RunError, RunRecord, RunUsage};
use crate::time::rfc3339_ms;
use serde::Serialize;
use serde_json::Value;

/// The most a snapshot's `streamed` text may take as JSON: half a message, so the snapshot
/// fits API Gateway's 128 KiB with the rest of the run. A longer one (escaping can grow the
/// 128 KiB checkpoint up to 6x) is left out, and `resume` replays the run's frames instead.
pub const MAX_VIEW_STREAMED_BYTES: usize = MAX_MESSAGE_BYTES / 2;

/// A run as shown to its owner.
#[derive(Debug, Serialize)]
pub struct ExecutionView<'a> {
    pub run_id: &'a str,
    pub thread_id: &'a str,
    pub request_id: &'a str,
    pub agent: &'a str,
    pub state: &'static str,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    /// The latest `seq` of the run's events as last persisted (a checkpoint of an alive run,
    /// the terminal event's of a finished one).
    pub seq: u64,
    /// An alive run's streamed text up to `seq`, as of its last checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streamed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a RunError>,
    /// Tokens, tool calls and (once ended) duration: as of the last checkpoint while alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<&'a RunUsage>,
    /// How many times the run was continued in a new invocation (absent: never).
    #[serde(skip_serializing_if = "is_zero")]
    pub continuations: u64,
    /// When the last continuation was dispatched (RFC 3339; absent: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continued_at: Option<String>,
    /// While the run waits for its owner's approval of tool calls: those calls and when the
    /// wait ends (the run is `running`, with no invocation driving it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<Box<AwaitingView<'a>>>,
    /// True when this reply answers a retried request that found the existing run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
}

/// What a suspended run waits for (`execution.awaiting`).
#[derive(Debug, Serialize)]
pub struct AwaitingView<'a> {
    /// The calls still unanswered, each as its `tool_approval_required` showed it.
    pub calls: Vec<AwaitedCallView<'a>>,
    /// RFC 3339: still unanswered then, the run ends `timeout` (`approval_timeout`).
    pub expires_at: String,
}

/// One call that waits for approval.
#[derive(Debug, Serialize)]
pub struct AwaitedCallView<'a> {
    pub call_id: &'a str,
    pub tool_name: &'a str,
    pub parameters: &'a Value,
    /// The `seq` of its `tool_approval_required` event.
    pub seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl<'a> ExecutionView<'a> {
    /// The view of `run`.
    pub fn of(run: &'a RunRecord, deduplicated: bool) -> Self {
        ExecutionView {
            run_id: &run.run_id,
            thread_id: &run.thread_id,
            request_id: &run.request_id,
            agent: &run.agent,
            state: run.state.as_str(),
            version: run.version,
            created_at: rfc3339_ms(run.created_at),
            updated_at: rfc3339_ms(run.updated_at),
            seq: run.seq,
            streamed: run.streamed.as_deref().filter(|s| {
                run.state.is_alive() && prefix_within(s, MAX_VIEW_STREAMED_BYTES).len() == s.len()
            }),
            result: run.result.as_ref(),
            error: run.error.as_ref(),
            usage: (!run.usage.is_zero()).then_some(&run.usage),
            continuations: run.continuations,
            continued_at: (run.continued_at > 0).then(|| rfc3339_ms(run.continued_at)),
            awaiting: run
                .awaiting
                .as_ref()
                .filter(|_| run.waiting_approval())
                .map(|a| {
                    Box::new(AwaitingView {
                        calls: a
                            .calls
                            .iter()
                            .filter(|c| c.answer.is_none())
                            .map(|c| AwaitedCallView {
                                call_id: &c.call_id,
                                tool_name: &c.tool_name,
                                parameters: &c.parameters,
                                seq: c.seq,
                            })
                            .collect(),
                        expires_at: rfc3339_ms(a.expires_at),
                    })
                }),
            deduplicated,
        }
    }
}

/// A page of runs.
#[derive(Debug, Serialize)]
pub struct ExecutionsView<'a> {
    pub items: Vec<ExecutionView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// What an `executions` reply holds besides its items, at most: the envelope, a `request_id`
/// (128 characters), a cursor (a 13-digit time and a run id) and the JSON around them.
const PAGE_ENVELOPE_BYTES: usize = 1024;

/// The runs of a page (newest first, followed by `cursor`) whose `executions` reply fits API
/// Gateway's message: as many as fit, and when fewer than all, a cursor that continues right
/// after the last one returned. A run too large to fit even alone is returned with its
/// result's text cut to fit ([`cut_text`]), so a page always moves on.
pub fn fit_page(
    runs: Vec<RunRecord>,
    cursor: Option<ListCursor>,
) -> (Vec<RunRecord>, Option<ListCursor>) {
    let room = MAX_MESSAGE_BYTES - PAGE_ENVELOPE_BYTES;
    let size = |r: &RunRecord| {
        serde_json::to_value(ExecutionView::of(r, false)).map_or(0, |v| json_len(&v)) + 1
    };
    let mut used = 0;
    let mut kept = Vec::with_capacity(runs.len());
    let total = runs.len();
    for mut run in runs {
        let n = size(&run);
        if used + n > room {
            if !kept.is_empty() {
                break;
            }
            // Alone and still too large: its result keeps its shape with the text cut.
            let others = n - run.result.as_ref().map_or(0, json_len);
            if let Some(result) = run.result.as_mut() {
                cut_text(result, room.saturating_sub(others));
            }
        }
        used += size(&run);
        kept.push(run);
    }
    if kept.len() < total {
        let next = kept.last().map(ListCursor::after);
        return (kept, next);
    }
    (kept, cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(i: u64, text_bytes: usize) -> RunRecord {
        RunRecord {
            run_id: format!("run-{i}"),
            created_at: 1_000 - i,
            result: Some(serde_json::json!({ "text": "é".repeat(text_bytes / 2) })),
            ..Default::default()
        }
    }

    /// A page too large for one message returns fewer runs and a cursor right after the last;
    /// one that fits keeps the store's cursor; a run too large alone is cut, not skipped.
    #[test]
    fn pages_are_cut_by_bytes_and_continue_after_the_last_run() {
        let runs: Vec<_> = (0..50).map(|i| run(i, 3_000)).collect();
        let (kept, next) = fit_page(runs, None);
        assert!(kept.len() < 50 && kept.len() > 30, "{}", kept.len());
        assert_eq!(next.unwrap().run_id, kept.last().unwrap().run_id);
        let store_cursor = ListCursor::after(&run(9, 0));
        let (kept, next) = fit_page(
            (0..3).map(|i| run(i, 10)).collect(),
            Some(store_cursor.clone()),
        );
        assert_eq!((kept.len(), next), (3, Some(store_cursor)));
        let (kept, next) = fit_page(vec![run(0, 300_000), run(1, 10)], None);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].result.as_ref().unwrap()["truncated"], true);
        assert_eq!(next.unwrap().run_id, "run-0");
    }
}
