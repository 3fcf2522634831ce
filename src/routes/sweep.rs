//! The scheduled sweep (an EventBridge event): ends the runs whose process died.

use super::{HandlerError, Output};
use crate::manager::{InitError, Manager};
use crate::sweep::{SweepReport, sweep};
use crate::telemetry::InvocationLog;
use crate::time::now_ms;

/// The route name of the scheduled sweep in logs and metrics.
pub const SWEEP_ROUTE: &str = "sweep";

/// Runs one sweep and reports it. A store that cannot be built is one error in the report
/// (the next scheduled sweep tries again); a manager that cannot be built fails the
/// invocation as retryable.
pub async fn handle(
    mgr: Result<&Manager, &InitError>,
    log: &mut InvocationLog<'_>,
) -> Result<Output, HandlerError> {
    log.route = Some(SWEEP_ROUTE);
    let deps = match mgr.map_err(HandlerError::initialisation)?.run_deps() {
        Ok(deps) => deps,
        Err(e) => {
            tracing::error!(error = %e, "sweep: store unavailable");
            return Ok(Output::Sweep(SweepReport {
                errors: 1,
                ..Default::default()
            }));
        }
    };
    Ok(Output::Sweep(sweep(&deps, now_ms()).await))
}
