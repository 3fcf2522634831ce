//! The in-memory store: maps and ordered index sets under one lock, for tests and benchmarks.
//!
//! Same semantics as the other backends (the shared contract suite runs on it): conditional
//! updates on (state, version), TTL honoured on read, the same index orderings.

use super::{
    CreateOutcome, Expected, ListCursor, Owner, RunPage, StorageError, Store,
    record::{ConnectionRecord, RunRecord},
    releases_slot,
    step::{MAX_JOURNAL_STEPS, StepRecord},
    usage::{DayUsage, Metering, Overrides, UsageToday, refusal},
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

/// Maps and index sets keyed by the owner's [`Owner::key`] (the bare user id without a tenant).
#[derive(Default)]
struct Inner {
    conns: HashMap<String, ConnectionRecord>,
    runs: HashMap<(String, String), RunRecord>,
    by_owner: BTreeSet<(String, u64, String)>,
    by_thread: BTreeSet<(String, String, u64, String)>,
    alive: BTreeSet<(u8, u64, String, String)>,
    /// Active-run slots taken, by owner key.
    active: HashMap<String, u64>,
    /// Day counters by (owner key or `TENANT#{t}`, day).
    usage: HashMap<(String, String), DayUsage>,
    /// Stored overrides by owner key or `TENANT#{t}`.
    overrides: HashMap<String, Overrides>,
    /// Journaled steps by (owner key, run id, step number).
    steps: BTreeMap<(String, String, u32), StepRecord>,
}

impl Inner {
    fn unindex(&mut self, r: &RunRecord) {
        let (u, id) = (r.owner().key().into_owned(), r.run_id.clone());
        self.by_owner.remove(&(u.clone(), r.created_at, id.clone()));
        self.by_thread
            .remove(&(u.clone(), r.thread_id.clone(), r.created_at, id.clone()));
        if let Some(due) = r.due_at() {
            self.alive.remove(&(r.shard(), due, u, id));
        }
    }

    fn put(&mut self, r: &RunRecord) {
        let (u, id) = (r.owner().key().into_owned(), r.run_id.clone());
        if let Some(old) = self.runs.insert((u.clone(), id.clone()), r.clone()) {
            self.unindex(&old);
        }
        self.by_owner.insert((u.clone(), r.created_at, id.clone()));
        self.by_thread
            .insert((u.clone(), r.thread_id.clone(), r.created_at, id.clone()));
        if let Some(due) = r.due_at() {
            self.alive.insert((r.shard(), due, u, id));
        }
    }
}

/// An in-memory [`Store`].
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

/// The keys of an owner's day counters and of their tenant's.
fn counter_keys(owner: Owner<'_>, day: &str) -> ((String, String), Option<(String, String)>) {
    let user = (owner.key().into_owned(), day.to_owned());
    let tenant = owner
        .tenant_id
        .map(|t| (super::keys::tenant_pk(t), day.to_owned()));
    (user, tenant)
}

impl MemoryStore {
    /// Stores the limits an operator set for `key`: an owner's [`Owner::key`] (its user
    /// fields count) or `TENANT#{tenant}` (its tenant fields count), as the DynamoDB items do.
    pub fn put_overrides(&self, key: &str, overrides: Overrides) {
        self.lock().overrides.insert(key.to_owned(), overrides);
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_secs() -> u64 {
    crate::time::now_ms() / 1000
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_connection(&self, conn: &ConnectionRecord) -> Result<(), StorageError> {
        self.lock()
            .conns
            .insert(conn.connection_id.clone(), conn.clone());
        Ok(())
    }

    async fn get_connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionRecord>, StorageError> {
        let now = now_secs();
        Ok(self
            .lock()
            .conns
            .get(connection_id)
            .filter(|c| c.expires_at > now)
            .cloned())
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<(), StorageError> {
        self.lock().conns.remove(connection_id);
        Ok(())
    }

    async fn user_connections(
        &self,
        owner: Owner<'_>,
    ) -> Result<Vec<ConnectionRecord>, StorageError> {
        let now = now_secs();
        let mut out: Vec<_> = self
            .lock()
            .conns
            .values()
            .filter(|c| c.owner() == owner && c.expires_at > now)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        Ok(out)
    }

    async fn create_run(&self, run: &RunRecord) -> Result<CreateOutcome, StorageError> {
        let mut inner = self.lock();
        let key = (run.owner().key().into_owned(), run.run_id.clone());
        if let Some(existing) = inner.runs.get(&key).filter(|r| !r.replaceable(now_secs())) {
            return Ok(CreateOutcome::Existing(Box::new(existing.clone())));
        }
        inner.put(run);
        Ok(CreateOutcome::Created)
    }

    async fn create_run_limited(
        &self,
        run: &RunRecord,
        max_active: u32,
    ) -> Result<CreateOutcome, StorageError> {
        let mut inner = self.lock();
        let owner = run.owner().key().into_owned();
        let key = (owner.clone(), run.run_id.clone());
        if let Some(existing) = inner.runs.get(&key).filter(|r| !r.replaceable(now_secs())) {
            return Ok(CreateOutcome::Existing(Box::new(existing.clone())));
        }
        let taken = inner.active.entry(owner).or_default();
        if *taken >= u64::from(max_active) {
            return Ok(CreateOutcome::AtLimit);
        }
        *taken += 1;
        inner.put(run);
        Ok(CreateOutcome::Created)
    }

    async fn create_run_metered(
        &self,
        run: &RunRecord,
        max_active: Option<u32>,
    ) -> Result<CreateOutcome, StorageError> {
        let Some(m) = &run.metering else {
            return match max_active {
                Some(max) => self.create_run_limited(run, max).await,
                None => self.create_run(run).await,
            };
        };
        let mut inner = self.lock();
        let owner = run.owner().key().into_owned();
        let key = (owner.clone(), run.run_id.clone());
        if let Some(existing) = inner.runs.get(&key).filter(|r| !r.replaceable(now_secs())) {
            return Ok(CreateOutcome::Existing(Box::new(existing.clone())));
        }
        let (uk, tk) = counter_keys(run.owner(), &m.day);
        let taken = inner.active.get(&owner).copied().unwrap_or(0);
        let user = inner.usage.get(&uk).copied().unwrap_or_default();
        let tenant = tk
            .as_ref()
            .map(|k| inner.usage.get(k).copied().unwrap_or_default());
        if let Some(refused) = refusal(max_active, taken, m, &user, tenant.as_ref()) {
            return Ok(refused);
        }
        if max_active.is_some() {
            *inner.active.entry(owner).or_default() += 1;
        }
        for k in std::iter::once(uk).chain(tk) {
            inner.usage.entry(k).or_default().runs += 1;
        }
        inner.put(run);
        Ok(CreateOutcome::Created)
    }

    async fn charge_usage(
        &self,
        owner: Owner<'_>,
        metering: &Metering,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<UsageToday, StorageError> {
        let mut inner = self.lock();
        let (uk, tk) = counter_keys(owner, &metering.day);
        let mut charge = |k| {
            let day: &mut DayUsage = inner.usage.entry(k).or_default();
            *day = day.charged(input_tokens, output_tokens);
            *day
        };
        let user = charge(uk);
        let tenant = tk.map(charge);
        Ok(UsageToday { user, tenant })
    }

    async fn usage_on(&self, owner: Owner<'_>, day: &str) -> Result<UsageToday, StorageError> {
        let inner = self.lock();
        let (uk, tk) = counter_keys(owner, day);
        let get = |k| inner.usage.get(&k).copied().unwrap_or_default();
        Ok(UsageToday {
            user: get(uk),
            tenant: tk.map(get),
        })
    }

    async fn limit_overrides(&self, owner: Owner<'_>) -> Result<Overrides, StorageError> {
        let inner = self.lock();
        let user = inner.overrides.get(owner.key().as_ref()).copied();
        let tenant = owner
            .tenant_id
            .and_then(|t| inner.overrides.get(&super::keys::tenant_pk(t)).copied());
        Ok(Overrides::merged(
            user.unwrap_or_default(),
            tenant.unwrap_or_default(),
        ))
    }

    async fn active_runs(&self, owner: Owner<'_>) -> Result<u64, StorageError> {
        Ok(self
            .lock()
            .active
            .get(owner.key().as_ref())
            .copied()
            .unwrap_or(0))
    }

    async fn get_run(
        &self,
        owner: Owner<'_>,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StorageError> {
        let now = now_secs();
        Ok(self
            .lock()
            .runs
            .get(&(owner.key().into_owned(), run_id.to_owned()))
            .filter(|r| r.expires_at > now)
            .cloned())
    }

    async fn update_run(&self, run: &RunRecord, expected: Expected) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let key = (run.owner().key().into_owned(), run.run_id.clone());
        match inner.runs.get(&key) {
            Some(c) if c.state == expected.state && c.version == expected.version => {
                if releases_slot(run, expected) {
                    let taken = inner.active.entry(key.0.clone()).or_default();
                    *taken = taken.saturating_sub(1);
                }
                inner.put(run);
                Ok(())
            }
            _ => Err(StorageError::conflict("update_run")),
        }
    }

    async fn list_runs(
        &self,
        owner: Owner<'_>,
        thread_id: Option<&str>,
        limit: usize,
        cursor: Option<&ListCursor>,
    ) -> Result<RunPage, StorageError> {
        let limit = ListCursor::page_size(limit);
        let inner = self.lock();
        let u = owner.key().into_owned();
        let (end_ts, end_id) = cursor
            .map(|c| (c.created_at, c.run_id.clone()))
            .unwrap_or((u64::MAX, String::new()));
        // Index rows newest first, before the cursor; one beyond the page tells whether
        // another page exists.
        let rows: Vec<(u64, String)> = match thread_id {
            None => inner
                .by_owner
                .range((u.clone(), 0, String::new())..(u.clone(), end_ts, end_id))
                .rev()
                .take(limit + 1)
                .map(|(_, ts, id)| (*ts, id.clone()))
                .collect(),
            Some(t) => {
                let t = t.to_owned();
                inner
                    .by_thread
                    .range((u.clone(), t.clone(), 0, String::new())..(u.clone(), t, end_ts, end_id))
                    .rev()
                    .take(limit + 1)
                    .map(|(_, _, ts, id)| (*ts, id.clone()))
                    .collect()
            }
        };
        let cursor = ListCursor::after_rows(&rows, limit);
        let now = now_secs();
        let items = rows
            .iter()
            .take(limit)
            .filter_map(|(_, id)| inner.runs.get(&(u.clone(), id.clone())))
            .filter(|r| r.expires_at > now)
            .cloned()
            .collect();
        Ok(RunPage { items, cursor })
    }

    async fn put_step(&self, step: &StepRecord) -> Result<(), StorageError> {
        let key = (step.owner().key().into_owned(), step.run_id.clone(), step.n);
        let now = now_secs();
        let mut inner = self.lock();
        // A live step of that number stays: the duplicate write is a no-op.
        if inner.steps.get(&key).is_none_or(|s| s.expires_at <= now) {
            inner.steps.insert(key, step.clone());
        }
        Ok(())
    }

    async fn steps(&self, owner: Owner<'_>, run_id: &str) -> Result<Vec<StepRecord>, StorageError> {
        let (u, id, now) = (owner.key().into_owned(), run_id.to_owned(), now_secs());
        let inner = self.lock();
        Ok(inner
            .steps
            .range((u.clone(), id.clone(), 0)..=(u, id, u32::MAX))
            .map(|(_, s)| s)
            .filter(|s| s.expires_at > now)
            .take(MAX_JOURNAL_STEPS)
            .cloned()
            .collect())
    }

    async fn due_runs(
        &self,
        shard: u8,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StorageError> {
        let inner = self.lock();
        let from = (shard, 0, String::new(), String::new());
        let to = (
            shard,
            now_ms.saturating_add(1),
            String::new(),
            String::new(),
        );
        Ok(inner
            .alive
            .range(from..to)
            .take(limit)
            .filter_map(|(_, _, u, id)| inner.runs.get(&(u.clone(), id.clone())))
            .cloned()
            .collect())
    }
}
