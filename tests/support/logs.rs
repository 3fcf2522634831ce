//! Captures every log line (and EMF document) the handler writes, through the real telemetry
//! subscriber, so tests can scan them.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// Everything written so far.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

/// One writer handed out by [`Logs`].
pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}

impl Logs {
    /// Installs wsexec's subscriber at `trace` level on this thread, writing here. Keep the
    /// guard alive for as long as logs should be captured (a current-thread runtime polls every
    /// task on this thread).
    pub fn capture() -> (Logs, DefaultGuard) {
        let logs = Logs::default();
        let guard =
            tracing::subscriber::set_default(wsexec::telemetry::subscriber("trace", logs.clone()));
        (logs, guard)
    }

    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Asserts that some lines were written, and that none contains any of `secrets` (nor the
    /// signature part of a JWT among them, nor the start of any JWT: `eyJ`).
    pub fn assert_free_of(&self, secrets: &[String]) {
        let lines = self.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(r#""message":"invocation""#)),
            "no invocation log line was captured"
        );
        let mut needles: Vec<&str> = vec!["eyJ"];
        for s in secrets {
            needles.push(s);
            if let Some(sig) = s.rsplit('.').next().filter(|sig| sig.len() >= 16) {
                needles.push(sig);
            }
            // PEM bodies: any one line of the key.
            needles.extend(
                s.lines()
                    .filter(|l| l.len() >= 16 && !l.starts_with("-----")),
            );
        }
        for line in &lines {
            for n in &needles {
                assert!(!line.contains(n), "a secret reached the logs: {line}");
            }
        }
    }
}
