//! How the binary serves invocations: one at a time (classic Lambda), or
//! `AWS_LAMBDA_MAX_CONCURRENCY` at once (Lambda Managed Instances).

/// The variable Lambda Managed Instances set to the function's
/// `PerExecutionEnvironmentMaxConcurrency`: how many invocations one process gets at once.
pub const MAX_CONCURRENCY_VAR: &str = "AWS_LAMBDA_MAX_CONCURRENCY";

/// How the process serves invocations, decided once at start-up from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Classic Lambda: one invocation at a time on a current-thread runtime, exactly as before
    /// concurrency existed (the cold-start path pays for nothing else).
    Sequential,
    /// Managed Instances: `invocations` long-polls at once, on `threads` runtime threads.
    Concurrent {
        /// `AWS_LAMBDA_MAX_CONCURRENCY`: the runtime's `/next` loops.
        invocations: u32,
        /// Worker threads: one per CPU the process may use, never more than `invocations`.
        /// One means a current-thread runtime (no thread hand-offs at all).
        threads: usize,
    },
}

impl Mode {
    /// The mode for `max_concurrency` (the raw variable, if set) on `cpus` usable CPUs. Parsed
    /// as `lambda_runtime` parses it, so the two never disagree: a whole number above 1 is
    /// concurrent, anything else (unset, 0, 1, garbage) sequential.
    pub fn of(max_concurrency: Option<&str>, cpus: usize) -> Mode {
        match max_concurrency.and_then(|v| v.parse::<u32>().ok()) {
            Some(n) if n > 1 => Mode::Concurrent {
                invocations: n,
                threads: cpus.clamp(1, n as usize),
            },
            _ => Mode::Sequential,
        }
    }

    /// The mode of this process: [`MAX_CONCURRENCY_VAR`] and the CPUs it may run on (its
    /// affinity mask, so `taskset` and cgroup limits count).
    pub fn from_env() -> Mode {
        let raw = std::env::var(MAX_CONCURRENCY_VAR).ok();
        if raw.is_none() {
            return Mode::Sequential;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Mode::of(raw.as_deref(), cpus)
    }

    /// The tokio runtime this mode runs on: current-thread unless there are several CPUs to
    /// use. Invocations mostly wait (on DynamoDB, `@connections`, a model), so one thread
    /// carries many of them; more threads pay off only for CPU work (TLS handshakes, JSON) and
    /// only when the environment has the vCPUs.
    pub fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Mode::Concurrent { threads, .. } if threads > 1 => {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
            }
            _ => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unset, 0, 1 and garbage stay sequential; a whole number above 1 is concurrent.
    #[test]
    fn only_a_concurrency_above_one_is_concurrent() {
        for raw in [
            None,
            Some("0"),
            Some("1"),
            Some(""),
            Some("-4"),
            Some("8x"),
            Some(" 8"),
        ] {
            assert_eq!(Mode::of(raw, 4), Mode::Sequential, "{raw:?}");
        }
        assert_eq!(
            Mode::of(Some("64"), 2),
            Mode::Concurrent {
                invocations: 64,
                threads: 2
            }
        );
    }

    /// Never more threads than invocations, never fewer than one.
    #[test]
    fn threads_are_bounded_by_cpus_and_invocations() {
        let threads = |raw, cpus| match Mode::of(Some(raw), cpus) {
            Mode::Concurrent { threads, .. } => threads,
            Mode::Sequential => 0,
        };
        assert_eq!(threads("2", 16), 2);
        assert_eq!(threads("64", 0), 1);
        assert_eq!(threads("64", 1), 1);
        assert_eq!(threads("64", 8), 8);
    }
}
