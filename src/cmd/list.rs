//! `list_executions`: a page of the caller's runs, newest first, optionally of one thread.

use super::{Caller, CmdError};
use crate::limits::{DEFAULT_PAGE_SIZE, MAX_CURSOR_LEN, MAX_ID_FIELD_BYTES, MAX_PAGE_SIZE};
use crate::manager::Manager;
use crate::protocol::inbound::{Fields, sized};
use crate::protocol::view::fit_page;
use crate::protocol::{
    ClientError, Envelope, ErrorCode, Event, ExecutionView, ExecutionsView, Reply, RunRef,
};
use crate::store::ListCursor;
use crate::sweep::reap_page;
use crate::time::now_ms;
use std::borrow::Cow;

/// `list_executions {thread_id?, limit?, cursor?}`.
#[derive(Clone, Debug, PartialEq)]
pub struct List<'a> {
    pub thread_id: Option<Cow<'a, str>>,
    /// 1..=[`MAX_PAGE_SIZE`]; [`DEFAULT_PAGE_SIZE`] when absent.
    pub limit: Option<usize>,
    pub cursor: Option<ListCursor>,
}

impl<'a> List<'a> {
    /// Reads the page request; a limit out of range or a malformed cursor is `invalid_field`.
    pub fn parse(f: Fields<'a>) -> Result<Self, ClientError> {
        let thread_id = sized("thread_id", f.thread_id, MAX_ID_FIELD_BYTES)?;
        let limit = match f.limit {
            None => None,
            Some(n @ 1..) if n as usize <= MAX_PAGE_SIZE => Some(n as usize),
            Some(_) => {
                return Err(ClientError::new(
                    ErrorCode::InvalidField,
                    format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let cursor =
            match sized("cursor", f.cursor, MAX_CURSOR_LEN)? {
                Some(c) => Some(ListCursor::parse(&c).ok_or_else(|| {
                    ClientError::new(ErrorCode::InvalidField, "cursor is invalid")
                })?),
                None => None,
            };
        Ok(List {
            thread_id,
            limit,
            cursor,
        })
    }

    /// One page as `executions {items, cursor?}`.
    pub async fn apply(self, mgr: &Manager, caller: &Caller<'_>) -> Result<Reply, CmdError> {
        let thread_id = match self.thread_id.as_deref() {
            Some(t) => Some(caller.id(mgr, "thread_id", t)?),
            None => None,
        };
        let deps = mgr.run_deps()?;
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        let page = deps
            .store
            .list_runs(caller.who.owner(), thread_id, limit, self.cursor.as_ref())
            .await?;
        let now = now_ms();
        let items = reap_page(&deps, page.items, now).await;
        // API Gateway delivers at most 128 KiB: a page of long runs is cut by bytes too.
        let (items, cursor) = fit_page(items, page.cursor);
        let view = ExecutionsView {
            items: items.iter().map(|r| ExecutionView::of(r, false)).collect(),
            cursor: cursor.map(|c| c.to_string()),
        };
        Ok(Envelope::new(
            Event::Executions(view),
            RunRef::request(caller.request_id),
            now,
        )
        .reply())
    }
}
