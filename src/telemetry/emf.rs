//! The `tracing` layer that writes EMF documents verbatim, one line each, whatever the log filter.

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// Writes the `emf` field of events on [`super::EMF_TARGET`] verbatim, one line each.
pub struct EmfLayer<W> {
    make_writer: W,
}

impl<W> EmfLayer<W> {
    pub fn new(make_writer: W) -> Self {
        EmfLayer { make_writer }
    }
}

impl<S, W> Layer<S> for EmfLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        struct Line<W>(W);
        impl<W: std::io::Write> Visit for Line<W> {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "emf" {
                    // One write per document, so concurrent lines never interleave.
                    let _ = self.0.write_all(format!("{value}\n").as_bytes());
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        event.record(&mut Line(self.make_writer.make_writer()));
    }
}
