//! The embedded store: redb on disk for local development, or in memory for tests and benches.
//!
//! One write transaction per operation gives the same conditional-write semantics as
//! DynamoDB; index tables mirror the DynamoDB GSIs, and TTL is honoured on read. An owner's rows
//! are keyed by [`Owner::key`]: the bare user id without a tenant, as before tenants.

use super::{
    CreateOutcome, Expected, ListCursor, Owner, RunPage, StorageError, StorageErrorKind, Store,
    keys,
    record::{ConnectionRecord, RunRecord},
    releases_slot,
    step::{MAX_JOURNAL_STEPS, StepRecord},
    usage::{DayUsage, Metering, Overrides, UsageToday, refusal},
};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::path::Path;

const CONNS: TableDefinition<&str, &[u8]> = TableDefinition::new("connections");
const USER_CONNS: TableDefinition<(&str, &str), ()> = TableDefinition::new("user_connections");
const RUNS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("runs");
const BY_OWNER: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("runs_by_owner");
const BY_THREAD: TableDefinition<(&str, &str, u64, &str), ()> =
    TableDefinition::new("runs_by_thread");
const ALIVE: TableDefinition<(u8, u64, &str, &str), ()> = TableDefinition::new("alive_runs");
/// Active-run slots taken, by owner key.
const ACTIVE: TableDefinition<&str, u64> = TableDefinition::new("active_runs");
/// Journaled steps by (owner key, run id, step number).
/// Day counters (JSON `DayUsage`) by (owner key or `TENANT#{t}`, day).
const USAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("usage_days");
/// Stored overrides (JSON `Overrides`) by owner key or `TENANT#{t}`.
const OVERRIDES: TableDefinition<&str, &[u8]> = TableDefinition::new("limit_overrides");
const STEPS: TableDefinition<(&str, &str, u32), &[u8]> = TableDefinition::new("run_steps");

/// The file name of the embedded database inside a data directory.
pub const DB_FILE: &str = "wsexec.redb";

/// A redb-backed [`Store`].
pub struct EmbeddedStore {
    db: Database,
    /// Whether commits must reach the disk: false for the in-memory backend, which has none.
    durable: bool,
}

fn db_err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StorageError {
    move |e| {
        let e: redb::Error = e.into();
        StorageError::new(StorageErrorKind::Unavailable, op, "embedded database error")
            .with_source(e)
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    op: &'static str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StorageError::new(StorageErrorKind::Invalid, op, "stored record is unreadable")
            .with_source(e)
    })
}

fn encode<T: serde::Serialize>(op: &'static str, v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|e| {
        StorageError::new(StorageErrorKind::Invalid, op, "record cannot be encoded").with_source(e)
    })
}

fn now_secs() -> u64 {
    crate::time::now_ms() / 1000
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `dir`, creating the directory when missing.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Unavailable,
                "open",
                "cannot create data dir",
            )
            .with_source(e)
        })?;
        let db = Database::create(dir.join(DB_FILE)).map_err(db_err("open"))?;
        EmbeddedStore::init(db, true)
    }

    /// A store that lives in memory only (tests, benchmarks).
    pub fn in_memory() -> Result<EmbeddedStore, StorageError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err("open"))?;
        EmbeddedStore::init(db, false)
    }

    fn init(db: Database, durable: bool) -> Result<EmbeddedStore, StorageError> {
        let store = EmbeddedStore { db, durable };
        store.write("open", |tx| {
            tx.open_table(CONNS).map_err(db_err("open"))?;
            tx.open_table(USER_CONNS).map_err(db_err("open"))?;
            tx.open_table(RUNS).map_err(db_err("open"))?;
            tx.open_table(BY_OWNER).map_err(db_err("open"))?;
            tx.open_table(BY_THREAD).map_err(db_err("open"))?;
            tx.open_table(ALIVE).map_err(db_err("open"))?;
            tx.open_table(ACTIVE).map_err(db_err("open"))?;
            tx.open_table(STEPS).map_err(db_err("open"))?;
            tx.open_table(USAGE).map_err(db_err("open"))?;
            tx.open_table(OVERRIDES).map_err(db_err("open"))?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `f` in one write transaction, committed only when `f` succeeds.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut tx = self.db.begin_write().map_err(db_err(op))?;
        if !self.durable {
            tx.set_durability(redb::Durability::None).map_err(|e| {
                StorageError::new(StorageErrorKind::Unavailable, op, "cannot set durability")
                    .with_source(e)
            })?;
        }
        let out = f(&tx)?;
        tx.commit().map_err(db_err(op))?;
        Ok(out)
    }

    fn read_run(
        tx: &WriteTransaction,
        op: &'static str,
        owner: &str,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StorageError> {
        let runs = tx.open_table(RUNS).map_err(db_err(op))?;
        let found = runs.get((owner, run_id)).map_err(db_err(op))?;
        found.map(|g| decode(op, g.value())).transpose()
    }

    /// Adds `delta` to the owner's taken active-run slots (never below 0); the new count (0
    /// reads it).
    fn add_active(
        tx: &WriteTransaction,
        op: &'static str,
        owner: &str,
        delta: i64,
    ) -> Result<u64, StorageError> {
        let mut active = tx.open_table(ACTIVE).map_err(db_err(op))?;
        let taken = active
            .get(owner)
            .map_err(db_err(op))?
            .map_or(0, |g| g.value());
        let now = taken.saturating_add_signed(delta);
        active.insert(owner, now).map_err(db_err(op))?;
        Ok(now)
    }

    /// One day's counters of `key` (an owner key or `TENANT#{t}`), zero when none.
    fn read_day(
        tx: &WriteTransaction,
        op: &'static str,
        key: &str,
        day: &str,
    ) -> Result<DayUsage, StorageError> {
        let usage = tx.open_table(USAGE).map_err(db_err(op))?;
        let found = usage.get((key, day)).map_err(db_err(op))?;
        Ok(found
            .map(|g| decode(op, g.value()))
            .transpose()?
            .unwrap_or_default())
    }

    fn write_day(
        tx: &WriteTransaction,
        op: &'static str,
        key: &str,
        day: &str,
        value: &DayUsage,
    ) -> Result<(), StorageError> {
        let mut usage = tx.open_table(USAGE).map_err(db_err(op))?;
        let bytes = encode(op, value)?;
        usage
            .insert((key, day), bytes.as_slice())
            .map_err(db_err(op))?;
        Ok(())
    }

    /// Stores the limits an operator set for `key`: an owner's [`Owner::key`] (its user
    /// fields count) or `TENANT#{tenant}` (its tenant fields count), as the DynamoDB items do.
    pub fn put_overrides(&self, key: &str, overrides: &Overrides) -> Result<(), StorageError> {
        const OP: &str = "put_overrides";
        self.write(OP, |tx| {
            let mut table = tx.open_table(OVERRIDES).map_err(db_err(OP))?;
            let bytes = encode(OP, overrides)?;
            table.insert(key, bytes.as_slice()).map_err(db_err(OP))?;
            Ok(())
        })
    }

    /// Writes `run` and its index rows, replacing `old`'s index rows.
    fn put_run(
        tx: &WriteTransaction,
        op: &'static str,
        run: &RunRecord,
        old: Option<&RunRecord>,
    ) -> Result<(), StorageError> {
        let bytes = encode(op, run)?;
        let mut runs = tx.open_table(RUNS).map_err(db_err(op))?;
        let mut owner = tx.open_table(BY_OWNER).map_err(db_err(op))?;
        let mut thread = tx.open_table(BY_THREAD).map_err(db_err(op))?;
        let mut alive = tx.open_table(ALIVE).map_err(db_err(op))?;
        if let Some(old) = old {
            let old_owner = old.owner().key();
            let (u, r) = (old_owner.as_ref(), old.run_id.as_str());
            owner.remove((u, old.created_at, r)).map_err(db_err(op))?;
            thread
                .remove((u, old.thread_id.as_str(), old.created_at, r))
                .map_err(db_err(op))?;
            if let Some(due) = old.due_at() {
                alive.remove((old.shard(), due, u, r)).map_err(db_err(op))?;
            }
        }
        let owner_key = run.owner().key();
        let (u, r) = (owner_key.as_ref(), run.run_id.as_str());
        runs.insert((u, r), bytes.as_slice()).map_err(db_err(op))?;
        owner
            .insert((u, run.created_at, r), ())
            .map_err(db_err(op))?;
        thread
            .insert((u, run.thread_id.as_str(), run.created_at, r), ())
            .map_err(db_err(op))?;
        if let Some(due) = run.due_at() {
            alive
                .insert((run.shard(), due, u, r), ())
                .map_err(db_err(op))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn put_connection(&self, conn: &ConnectionRecord) -> Result<(), StorageError> {
        const OP: &str = "put_connection";
        let bytes = encode(OP, conn)?;
        self.write(OP, |tx| {
            let mut conns = tx.open_table(CONNS).map_err(db_err(OP))?;
            let previous = conns
                .insert(conn.connection_id.as_str(), bytes.as_slice())
                .map_err(db_err(OP))?
                .map(|g| decode::<ConnectionRecord>(OP, g.value()))
                .transpose()?;
            let mut by_user = tx.open_table(USER_CONNS).map_err(db_err(OP))?;
            if let Some(p) = previous {
                by_user
                    .remove((p.owner().key().as_ref(), p.connection_id.as_str()))
                    .map_err(db_err(OP))?;
            }
            by_user
                .insert(
                    (conn.owner().key().as_ref(), conn.connection_id.as_str()),
                    (),
                )
                .map_err(db_err(OP))?;
            Ok(())
        })
    }

    async fn get_connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionRecord>, StorageError> {
        const OP: &str = "get_connection";
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let conns = tx.open_table(CONNS).map_err(db_err(OP))?;
        let found = conns.get(connection_id).map_err(db_err(OP))?;
        let rec: Option<ConnectionRecord> = found.map(|g| decode(OP, g.value())).transpose()?;
        Ok(rec.filter(|c| c.expires_at > now_secs()))
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<(), StorageError> {
        const OP: &str = "delete_connection";
        self.write(OP, |tx| {
            let mut conns = tx.open_table(CONNS).map_err(db_err(OP))?;
            let removed = conns
                .remove(connection_id)
                .map_err(db_err(OP))?
                .map(|g| decode::<ConnectionRecord>(OP, g.value()))
                .transpose()?;
            if let Some(c) = removed {
                let mut by_user = tx.open_table(USER_CONNS).map_err(db_err(OP))?;
                by_user
                    .remove((c.owner().key().as_ref(), c.connection_id.as_str()))
                    .map_err(db_err(OP))?;
            }
            Ok(())
        })
    }

    async fn user_connections(
        &self,
        owner: Owner<'_>,
    ) -> Result<Vec<ConnectionRecord>, StorageError> {
        let key = owner.key();
        let user_id = key.as_ref();
        const OP: &str = "user_connections";
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let by_user = tx.open_table(USER_CONNS).map_err(db_err(OP))?;
        let conns = tx.open_table(CONNS).map_err(db_err(OP))?;
        let now = now_secs();
        let mut out = Vec::new();
        for row in by_user.range((user_id, "")..).map_err(db_err(OP))? {
            let (k, _) = row.map_err(db_err(OP))?;
            let (u, id) = k.value();
            if u != user_id {
                break;
            }
            if let Some(g) = conns.get(id).map_err(db_err(OP))? {
                let c: ConnectionRecord = decode(OP, g.value())?;
                if c.expires_at > now {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    async fn create_run(&self, run: &RunRecord) -> Result<CreateOutcome, StorageError> {
        const OP: &str = "create_run";
        self.write(OP, |tx| {
            let old = Self::read_run(tx, OP, &run.owner().key(), &run.run_id)?;
            match old {
                Some(existing) if !existing.replaceable(now_secs()) => {
                    Ok(CreateOutcome::Existing(Box::new(existing)))
                }
                replaced => {
                    Self::put_run(tx, OP, run, replaced.as_ref())?;
                    Ok(CreateOutcome::Created)
                }
            }
        })
    }

    async fn create_run_limited(
        &self,
        run: &RunRecord,
        max_active: u32,
    ) -> Result<CreateOutcome, StorageError> {
        const OP: &str = "create_run";
        let owner = run.owner().key();
        self.write(OP, |tx| {
            let old = Self::read_run(tx, OP, &owner, &run.run_id)?;
            match old {
                Some(existing) if !existing.replaceable(now_secs()) => {
                    Ok(CreateOutcome::Existing(Box::new(existing)))
                }
                replaced => {
                    if Self::add_active(tx, OP, &owner, 0)? >= u64::from(max_active) {
                        return Ok(CreateOutcome::AtLimit);
                    }
                    Self::add_active(tx, OP, &owner, 1)?;
                    Self::put_run(tx, OP, run, replaced.as_ref())?;
                    Ok(CreateOutcome::Created)
                }
            }
        })
    }

    async fn create_run_metered(
        &self,
        run: &RunRecord,
        max_active: Option<u32>,
    ) -> Result<CreateOutcome, StorageError> {
        const OP: &str = "create_run";
        let Some(m) = &run.metering else {
            return match max_active {
                Some(max) => self.create_run_limited(run, max).await,
                None => self.create_run(run).await,
            };
        };
        let owner = run.owner().key();
        let tenant = run.tenant_id.as_deref().map(keys::tenant_pk);
        self.write(OP, |tx| {
            let old = Self::read_run(tx, OP, &owner, &run.run_id)?;
            if let Some(existing) = old.as_ref().filter(|e| !e.replaceable(now_secs())) {
                return Ok(CreateOutcome::Existing(Box::new(existing.clone())));
            }
            let taken = Self::add_active(tx, OP, &owner, 0)?;
            let user = Self::read_day(tx, OP, &owner, &m.day)?;
            let tenant_day = match &tenant {
                Some(t) => Some(Self::read_day(tx, OP, t, &m.day)?),
                None => None,
            };
            if let Some(refused) = refusal(max_active, taken, m, &user, tenant_day.as_ref()) {
                return Ok(refused);
            }
            if max_active.is_some() {
                Self::add_active(tx, OP, &owner, 1)?;
            }
            let counted = DayUsage {
                runs: user.runs + 1,
                ..user
            };
            Self::write_day(tx, OP, &owner, &m.day, &counted)?;
            if let (Some(t), Some(day)) = (&tenant, tenant_day) {
                let counted = DayUsage {
                    runs: day.runs + 1,
                    ..day
                };
                Self::write_day(tx, OP, t, &m.day, &counted)?;
            }
            Self::put_run(tx, OP, run, old.as_ref())?;
            Ok(CreateOutcome::Created)
        })
    }

    async fn charge_usage(
        &self,
        owner: Owner<'_>,
        metering: &Metering,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<UsageToday, StorageError> {
        const OP: &str = "charge_usage";
        let user_key = owner.key();
        let tenant = owner.tenant_id.map(keys::tenant_pk);
        self.write(OP, |tx| {
            let mut charge = |key: &str| -> Result<DayUsage, StorageError> {
                let day = Self::read_day(tx, OP, key, &metering.day)?
                    .charged(input_tokens, output_tokens);
                Self::write_day(tx, OP, key, &metering.day, &day)?;
                Ok(day)
            };
            let user = charge(&user_key)?;
            let tenant = tenant.as_deref().map(&mut charge).transpose()?;
            Ok(UsageToday { user, tenant })
        })
    }

    async fn usage_on(&self, owner: Owner<'_>, day: &str) -> Result<UsageToday, StorageError> {
        const OP: &str = "usage_on";
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let usage = tx.open_table(USAGE).map_err(db_err(OP))?;
        let get = |key: &str| -> Result<DayUsage, StorageError> {
            let found = usage.get((key, day)).map_err(db_err(OP))?;
            Ok(found
                .map(|g| decode(OP, g.value()))
                .transpose()?
                .unwrap_or_default())
        };
        let user = get(&owner.key())?;
        let tenant = owner
            .tenant_id
            .map(|t| get(&keys::tenant_pk(t)))
            .transpose()?;
        Ok(UsageToday { user, tenant })
    }

    async fn limit_overrides(&self, owner: Owner<'_>) -> Result<Overrides, StorageError> {
        const OP: &str = "limit_overrides";
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let table = tx.open_table(OVERRIDES).map_err(db_err(OP))?;
        let get = |key: &str| -> Result<Overrides, StorageError> {
            let found = table.get(key).map_err(db_err(OP))?;
            Ok(found
                .map(|g| decode(OP, g.value()))
                .transpose()?
                .unwrap_or_default())
        };
        let user = get(&owner.key())?;
        let tenant = match owner.tenant_id {
            Some(t) => get(&keys::tenant_pk(t))?,
            None => Overrides::default(),
        };
        Ok(Overrides::merged(user, tenant))
    }

    async fn active_runs(&self, owner: Owner<'_>) -> Result<u64, StorageError> {
        const OP: &str = "active_runs";
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let active = tx.open_table(ACTIVE).map_err(db_err(OP))?;
        let taken = active.get(owner.key().as_ref()).map_err(db_err(OP))?;
        Ok(taken.map_or(0, |g| g.value()))
    }

    async fn get_run(
        &self,
        owner: Owner<'_>,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StorageError> {
        const OP: &str = "get_run";
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let runs = tx.open_table(RUNS).map_err(db_err(OP))?;
        let found = runs
            .get((owner.key().as_ref(), run_id))
            .map_err(db_err(OP))?;
        let rec: Option<RunRecord> = found.map(|g| decode(OP, g.value())).transpose()?;
        Ok(rec.filter(|r| r.expires_at > now_secs()))
    }

    async fn update_run(&self, run: &RunRecord, expected: Expected) -> Result<(), StorageError> {
        const OP: &str = "update_run";
        self.write(OP, |tx| {
            let current = Self::read_run(tx, OP, &run.owner().key(), &run.run_id)?
                .filter(|c| c.state == expected.state && c.version == expected.version)
                .ok_or_else(|| StorageError::conflict(OP))?;
            if releases_slot(run, expected) {
                Self::add_active(tx, OP, &run.owner().key(), -1)?;
            }
            Self::put_run(tx, OP, run, Some(&current))
        })
    }

    async fn list_runs(
        &self,
        owner: Owner<'_>,
        thread_id: Option<&str>,
        limit: usize,
        cursor: Option<&ListCursor>,
    ) -> Result<RunPage, StorageError> {
        const OP: &str = "list_runs";
        let limit = ListCursor::page_size(limit);
        let key = owner.key();
        let user_id = key.as_ref();
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let runs = tx.open_table(RUNS).map_err(db_err(OP))?;
        let (end_ts, end_id) = cursor
            .map(|c| (c.created_at, c.run_id.as_str()))
            .unwrap_or((u64::MAX, ""));
        // Index rows newest first, up to (excluding) the cursor position; one row beyond the
        // page tells whether another page exists.
        let mut rows: Vec<(u64, String)> = Vec::new();
        match thread_id {
            None => {
                let idx = tx.open_table(BY_OWNER).map_err(db_err(OP))?;
                let range = idx
                    .range((user_id, 0, "")..(user_id, end_ts, end_id))
                    .map_err(db_err(OP))?;
                for row in range.rev().take(limit + 1) {
                    let (k, _) = row.map_err(db_err(OP))?;
                    let (_, ts, id) = k.value();
                    rows.push((ts, id.to_owned()));
                }
            }
            Some(t) => {
                let idx = tx.open_table(BY_THREAD).map_err(db_err(OP))?;
                let range = idx
                    .range((user_id, t, 0, "")..(user_id, t, end_ts, end_id))
                    .map_err(db_err(OP))?;
                for row in range.rev().take(limit + 1) {
                    let (k, _) = row.map_err(db_err(OP))?;
                    let (_, _, ts, id) = k.value();
                    rows.push((ts, id.to_owned()));
                }
            }
        }
        let cursor = ListCursor::after_rows(&rows, limit);
        let now = now_secs();
        let mut items = Vec::with_capacity(limit);
        for (_, id) in rows.iter().take(limit) {
            if let Some(g) = runs.get((user_id, id.as_str())).map_err(db_err(OP))? {
                let r: RunRecord = decode(OP, g.value())?;
                if r.expires_at > now {
                    items.push(r);
                }
            }
        }
        Ok(RunPage { items, cursor })
    }

    async fn put_step(&self, step: &StepRecord) -> Result<(), StorageError> {
        const OP: &str = "put_step";
        let bytes = encode(OP, step)?;
        let owner = step.owner().key();
        let key = (owner.as_ref(), step.run_id.as_str(), step.n);
        self.write(OP, |tx| {
            let mut steps = tx.open_table(STEPS).map_err(db_err(OP))?;
            let live = match steps.get(key).map_err(db_err(OP))? {
                Some(g) => decode::<StepRecord>(OP, g.value())?.expires_at > now_secs(),
                None => false,
            };
            // A live step of that number stays: the duplicate write is a no-op.
            if !live {
                steps.insert(key, bytes.as_slice()).map_err(db_err(OP))?;
            }
            Ok(())
        })
    }

    async fn steps(&self, owner: Owner<'_>, run_id: &str) -> Result<Vec<StepRecord>, StorageError> {
        const OP: &str = "steps";
        let key = owner.key();
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let steps = tx.open_table(STEPS).map_err(db_err(OP))?;
        let range = steps
            .range((key.as_ref(), run_id, 0)..=(key.as_ref(), run_id, u32::MAX))
            .map_err(db_err(OP))?;
        let now = now_secs();
        let mut out = Vec::new();
        for row in range {
            if out.len() >= MAX_JOURNAL_STEPS {
                break;
            }
            let (_, v) = row.map_err(db_err(OP))?;
            let step: StepRecord = decode(OP, v.value())?;
            if step.expires_at > now {
                out.push(step);
            }
        }
        Ok(out)
    }

    async fn due_runs(
        &self,
        shard: u8,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StorageError> {
        const OP: &str = "due_runs";
        let tx = self.db.begin_read().map_err(db_err(OP))?;
        let alive = tx.open_table(ALIVE).map_err(db_err(OP))?;
        let runs = tx.open_table(RUNS).map_err(db_err(OP))?;
        let mut out = Vec::new();
        let range = alive
            .range((shard, 0, "", "")..(shard, now_ms.saturating_add(1), "", ""))
            .map_err(db_err(OP))?;
        for row in range {
            if out.len() >= limit {
                break;
            }
            let (k, _) = row.map_err(db_err(OP))?;
            let (_, _, user, run) = k.value();
            if let Some(g) = runs.get((user, run)).map_err(db_err(OP))? {
                out.push(decode(OP, g.value())?);
            }
        }
        Ok(out)
    }
}
