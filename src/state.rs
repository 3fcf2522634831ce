//! The 9-state run machine: the whole transition table first, then the types it acts on.
//!
//! ```text
//! event      | pending   starting  running    completing | terminal
//! -----------+---------------------------------------------+---------------------
//! Advance    | starting  running   completing completed  | TransitionError
//! Heartbeat  | pending   starting  running    completing | TransitionError
//! Attach     | pending   starting  running    completing | TransitionError
//! Detach     | pending   starting  running    completing | TransitionError
//! Fail       | failed    failed    failed     failed     | TransitionError
//! TimeOut    | timeout   timeout   timeout    timeout    | TransitionError
//! Die        | dead      dead      dead       dead       | TransitionError
//! Cancel     | cancelled cancelled cancelled  cancelled  | TransitionError
//! ```
//!
//! Terminal states are absorbing: every event on them is an error, so nothing ever leaves them.
//! The machine does no I/O; the run driver persists each new state with a conditional write on
//! the previous (state, version).

use serde::{Deserialize, Serialize};

/// The events that take a freshly created run to `running` (persisted in one create).
pub const START: [RunEvent; 2] = [RunEvent::Advance, RunEvent::Advance];

/// The events that take a `running` run to `completed` (persisted in one write).
pub const COMPLETE: [RunEvent; 2] = [RunEvent::Advance, RunEvent::Advance];

/// What happens to a run; the table in the module doc gives the resulting state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunEvent {
    /// Move one step along the forward path.
    Advance,
    /// Renew liveness without changing state.
    Heartbeat,
    /// A connection attaches to follow the run (`resume`); the state stays.
    Attach,
    /// A follower leaves the run (`$disconnect`); the state stays.
    Detach,
    /// The agent failed.
    Fail,
    /// The run exceeded its time limit.
    TimeOut,
    /// The run's process died (missed heartbeat deadline).
    Die,
    /// The owner cancelled the run.
    Cancel,
}

impl RunEvent {
    /// Every event, for exhaustive tests.
    pub const ALL: [RunEvent; 8] = [
        RunEvent::Advance,
        RunEvent::Heartbeat,
        RunEvent::Attach,
        RunEvent::Detach,
        RunEvent::Fail,
        RunEvent::TimeOut,
        RunEvent::Die,
        RunEvent::Cancel,
    ];
}

/// The nine states of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Where every run begins.
    #[default]
    Pending,
    Starting,
    Running,
    Completing,
    Completed,
    Failed,
    Timeout,
    Dead,
    Cancelled,
}

/// An event that the table does not define for the state it was applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transition {event:?} is not defined from state {from}")]
pub struct TransitionError {
    pub from: ExecutionState,
    pub event: RunEvent,
}

impl ExecutionState {
    /// Every state, for exhaustive tests.
    pub const ALL: [ExecutionState; 9] = [
        ExecutionState::Pending,
        ExecutionState::Starting,
        ExecutionState::Running,
        ExecutionState::Completing,
        ExecutionState::Completed,
        ExecutionState::Failed,
        ExecutionState::Timeout,
        ExecutionState::Dead,
        ExecutionState::Cancelled,
    ];

    /// The transition table of the module doc. Every (state, event) pair is spelled out: a new
    /// state cannot fall into another state's row by accident.
    pub fn apply(self, event: RunEvent) -> Result<ExecutionState, TransitionError> {
        use ExecutionState::*;
        let undefined = Err(TransitionError { from: self, event });
        match (self, event) {
            (Completed | Failed | Timeout | Dead | Cancelled, _) => undefined,
            (Pending, RunEvent::Advance) => Ok(Starting),
            (Starting, RunEvent::Advance) => Ok(Running),
            (Running, RunEvent::Advance) => Ok(Completing),
            (Completing, RunEvent::Advance) => Ok(Completed),
            (Pending | Starting | Running | Completing, RunEvent::Heartbeat) => Ok(self),
            (Pending | Starting | Running | Completing, RunEvent::Attach) => Ok(self),
            (Pending | Starting | Running | Completing, RunEvent::Detach) => Ok(self),
            (Pending | Starting | Running | Completing, RunEvent::Fail) => Ok(Failed),
            (Pending | Starting | Running | Completing, RunEvent::TimeOut) => Ok(Timeout),
            (Pending | Starting | Running | Completing, RunEvent::Die) => Ok(Dead),
            (Pending | Starting | Running | Completing, RunEvent::Cancel) => Ok(Cancelled),
        }
    }

    /// Applies events in order, stopping at the first undefined one.
    pub fn apply_all(self, events: &[RunEvent]) -> Result<ExecutionState, TransitionError> {
        events.iter().try_fold(self, |s, e| s.apply(*e))
    }

    /// Pending, starting, running or completing.
    pub fn is_alive(self) -> bool {
        !self.is_terminal()
    }

    /// Completed, failed, timeout, dead or cancelled: absorbing.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionState::Completed
                | ExecutionState::Failed
                | ExecutionState::Timeout
                | ExecutionState::Dead
                | ExecutionState::Cancelled
        )
    }

    /// The stable lowercase name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Pending => "pending",
            ExecutionState::Starting => "starting",
            ExecutionState::Running => "running",
            ExecutionState::Completing => "completing",
            ExecutionState::Completed => "completed",
            ExecutionState::Failed => "failed",
            ExecutionState::Timeout => "timeout",
            ExecutionState::Dead => "dead",
            ExecutionState::Cancelled => "cancelled",
        }
    }

    /// Parses the name produced by [`ExecutionState::as_str`].
    pub fn parse(s: &str) -> Option<ExecutionState> {
        ExecutionState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for ExecutionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ExecutionState::*;
    use super::*;

    /// Every (state, event) pair gives exactly the table's answer.
    #[test]
    fn every_state_event_pair_matches_the_table() {
        for s in ExecutionState::ALL {
            for e in RunEvent::ALL {
                let got = s.apply(e);
                let want = if s.is_terminal() {
                    None
                } else {
                    Some(match e {
                        RunEvent::Advance => match s {
                            Pending => Starting,
                            Starting => Running,
                            Running => Completing,
                            Completing => Completed,
                            _ => unreachable!(),
                        },
                        RunEvent::Heartbeat | RunEvent::Attach | RunEvent::Detach => s,
                        RunEvent::Fail => Failed,
                        RunEvent::TimeOut => Timeout,
                        RunEvent::Die => Dead,
                        RunEvent::Cancel => Cancelled,
                    })
                };
                match want {
                    Some(w) => assert_eq!(got, Ok(w), "{s} {e:?}"),
                    None => assert_eq!(got, Err(TransitionError { from: s, event: e })),
                }
            }
        }
    }

    /// Exactly four states are alive and five terminal, and names round-trip.
    #[test]
    fn alive_and_terminal_partition_the_states() {
        let alive: Vec<_> = ExecutionState::ALL
            .into_iter()
            .filter(|s| s.is_alive())
            .collect();
        assert_eq!(alive, vec![Pending, Starting, Running, Completing]);
        for s in ExecutionState::ALL {
            assert_eq!(ExecutionState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
