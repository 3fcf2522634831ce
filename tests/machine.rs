//! Property tests of the run machine and of persisted transitions under random event sequences.

mod support;

use proptest::prelude::*;
use wsexec::state::{ExecutionState, RunEvent};

fn event() -> impl Strategy<Value = RunEvent> {
    prop::sample::select(RunEvent::ALL.to_vec())
}

proptest! {
    /// No run ever leaves a terminal state, and none reaches `completed` without passing
    /// starting → running → completing, whatever the event sequence.
    #[test]
    fn terminal_is_absorbing_and_completed_needs_the_forward_path(events in prop::collection::vec(event(), 0..40)) {
        let mut state = ExecutionState::Pending;
        let mut visited = vec![state];
        for e in events {
            match state.apply(e) {
                Ok(next) => {
                    prop_assert!(state.is_alive(), "{state} moved to {next}");
                    state = next;
                    visited.push(state);
                }
                Err(err) => {
                    prop_assert!(state.is_terminal(), "alive {state} refused {e:?}");
                    prop_assert_eq!(err.from, state);
                }
            }
        }
        if state == ExecutionState::Completed {
            let pos = |s| visited.iter().position(|v| *v == s);
            let (st, ru, co) = (pos(ExecutionState::Starting), pos(ExecutionState::Running), pos(ExecutionState::Completing));
            prop_assert!(st.is_some() && ru.is_some() && co.is_some());
            prop_assert!(st < ru && ru < co);
        }
        let terminals = visited.iter().filter(|s| s.is_terminal()).count();
        prop_assert!(terminals <= 1, "a run reached two terminal states: {visited:?}");
    }
}

mod persisted {
    use super::*;
    use crate::support::contract;
    use std::sync::Arc;
    use wsexec::store::embedded::EmbeddedStore;
    use wsexec::store::{Expected, Store};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random writers racing with stale expectations never move a stored run backwards or
        /// out of a terminal state: the stored version only grows, by one per accepted write.
        #[test]
        fn conditional_writes_never_move_a_run_backwards(
            steps in prop::collection::vec((event(), 0u64..4), 1..30)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
                let start = contract::run("prop-user", "run-prop", wsexec::time::now_ms());
                store.create_run(&start).await.unwrap();
                let mut known = vec![start.clone()];
                for (e, lag) in steps {
                    // A writer acting on a possibly stale read.
                    let seen = known[known.len().saturating_sub(1 + lag as usize)].clone();
                    let Ok(state) = seen.state.apply(e) else { continue };
                    let mut next = seen.clone();
                    next.state = state;
                    next.version += 1;
                    let before = store.get_run("prop-user".into(), "run-prop").await.unwrap().unwrap();
                    let res = store.update_run(&next, Expected::of(&seen)).await;
                    let after = store.get_run("prop-user".into(), "run-prop").await.unwrap().unwrap();
                    match res {
                        Ok(()) => {
                            prop_assert_eq!(&before, &seen);
                            prop_assert_eq!(after.version, before.version + 1);
                            prop_assert!(before.state.is_alive());
                            known.push(after);
                        }
                        Err(_) => prop_assert_eq!(&after, &before),
                    }
                }
                Ok(())
            })?;
        }
    }
}
