//! The lock.io state machine: sessions, locks, fence tokens and expiry, and nothing else.
//!
//! This crate is the part of lock.io that every replica runs identically. It is pure:
//!
//! - no I/O, no clock, no randomness: the leader stamps the time (`UnixMillis`) and mints
//!   session ids before a `Command` enters the Raft log, and `LockState::apply` only reads
//!   what the command carries;
//! - only ordered collections (`BTreeMap`/`BTreeSet`), so a snapshot of the same state is the
//!   same bytes on every replica;
//! - every domain outcome (lock held, session expired, wrong token, even a command that would
//!   be invalid) is a value of `Outcome`; `apply` never panics on a command, because a panic
//!   that one replica hits and another does not would split the cluster.
//!
//! Raft, storage, transport, time-keeping and HTTP live in the `lockio` crate and see this
//! crate only through `Command`, `Outcome`, the read methods of `LockState`, and
//! `LockState::snapshot`/`LockState::restore`.
//!
//! Waiting is part of the state: each resource has a FIFO queue of waiting sessions, and a
//! command that frees a lock (release, delete, expiry, cleanup, the end of a lock-delay) hands
//! it to the head of the queue in the same step. `LockState::apply_traced` also reports what
//! happened, in order (`Effect`), for the event stream and the leader's open waits.
//!
//! A resource is held by one exclusive holder or by shared holders (readers, or up to a limit:
//! a counting semaphore), each grant with its own fence token and an optional value; one queue
//! per resource serves both modes in arrival order.

mod command;
mod state;
mod types;

pub use command::{Applied, Command, DomainError, Effect, ExpiredSession, Grant, Outcome, WaitEnd, Waiter};
pub use state::{Hold, Lock, LockState, Session, SessionStatus, SnapshotError, Stats, EXPIRED_RETENTION, MAX_WAITERS};
pub use types::{
    ClientId, FenceToken, InvalidValue, Limit, LockDelay, LockValue, Mode, Resource, SessionId, Timeout, UnixMillis,
    WaitSecs,
};
