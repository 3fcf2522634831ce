//! `list_executions`: a page of the caller's runs, newest first, optionally of one thread.

use super::Caller;
use crate::limits::DEFAULT_PAGE_SIZE;
use crate::manager::Manager;
use crate::protocol::view::fit_page;
use crate::protocol::{
    ClientError, Envelope, ErrorCode, Event, ExecutionView, ExecutionsView, ListRequest, Reply,
    RunRef,
};
use crate::store::ListCursor;
use crate::sweep::reap_page;
use crate::telemetry::log_storage;
use crate::time::now_ms;

/// One page as `executions {items, cursor?}`.
pub async fn apply(mgr: &Manager, caller: &Caller<'_>, req: ListRequest<'_>) -> Reply {
    let cursor = match req.cursor.as_deref().map(ListCursor::parse) {
        Some(None) => {
            return caller.error(&ClientError::new(
                ErrorCode::InvalidField,
                "cursor is invalid",
            ));
        }
        Some(Some(c)) => Some(c),
        None => None,
    };
    let thread_id = match req.thread_id.as_deref() {
        Some(t) => match caller.id(mgr, "thread_id", t) {
            Ok(t) => Some(t),
            Err(reply) => return reply,
        },
        None => None,
    };
    let deps = match mgr.run_deps() {
        Ok(d) => d,
        Err(e) => return caller.error(&e.client_error()),
    };
    let limit = req.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    let page = match deps
        .store
        .list_runs(&caller.who.user_id, thread_id, limit, cursor.as_ref())
        .await
    {
        Ok(p) => p,
        Err(e) => {
            log_storage(&e);
            return caller.error(&ClientError::storage(&e));
        }
    };
    let now = now_ms();
    let items = reap_page(&deps, page.items, now).await;
    // API Gateway delivers at most 128 KiB: a page of long runs is cut by bytes too.
    let (items, cursor) = fit_page(items, page.cursor);
    let view = ExecutionsView {
        items: items.iter().map(|r| ExecutionView::of(r, false)).collect(),
        cursor: cursor.map(|c| c.to_string()),
    };
    Envelope::new(
        Event::Executions(view),
        RunRef::request(caller.request_id),
        now,
    )
    .reply()
}
