//! Runs every `tests/scenarios/*.script` file against a fresh `LockState`.
//!
//! A script is a list of commands; each is followed by the lines it must print, each starting
//! with `> `. Blank lines and `#` comments are ignored. Sessions are named (`s1`, `worker`), and
//! each name stands for a fixed session id. The commands:
//!
//! ```text
//! create S client=C timeout=N [delay=D] at=T     delete S at=T
//! acquire S R at=T                     release S R token=N at=T
//! wait S R until=T [mode=shared] [limit=N] [value=V] at=T (Wait; until=T at=T is a try-lock)
//! cancel S R at=T (CancelWait)         tick at=T
//! queue R (its waiters, head first)    fence R token=N (fence check)
//! expire S... at=T                     cleanup S... at=T
//! record S@T... at=T (RecordKeepalives)  session-keepalive S (its last_keepalive)
//! session S    lock R    locks    stats    keepalive S (the leader's liveness check)
//! create-raw S client=C timeout=N at=T (bypasses validation, as a corrupt log would)
//! snapshot     (checks restore(snapshot) is the identity)
//! ```
//!
//! After a command's own line, the queue effects it had follow: `handed R to S token=N
//! waited=MS` for a grant from a queue, `wait ended S R REASON waited=MS`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use lockio_core::{
    Applied, ClientId, Command, DomainError, Effect, FenceToken, Limit, LockDelay, LockState, LockValue, Mode, Outcome,
    Resource, SessionId, SessionStatus, Timeout, UnixMillis,
};

struct Script {
    state: LockState,
    names: BTreeMap<String, SessionId>,
}

impl Script {
    fn id(&mut self, name: &str) -> SessionId {
        let next = self.names.len() as u128 + 1;
        *self.names.entry(name.to_string()).or_insert_with(|| SessionId(uuid::Uuid::from_u128(next)))
    }

    fn name(&self, id: &SessionId) -> String {
        self.names.iter().find(|(_, v)| *v == id).map(|(k, _)| k.clone()).unwrap_or_else(|| id.to_string())
    }

    fn run(&mut self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut opts = BTreeMap::new();
        let mut args = Vec::new();
        for w in &words[1..] {
            match w.split_once('=') {
                Some((k, v)) => {
                    opts.insert(k.to_string(), v.to_string());
                }
                None => args.push(w.to_string()),
            }
        }
        let at = |opts: &BTreeMap<String, String>| UnixMillis(opts.get("at").map(|v| v.parse().unwrap()).unwrap_or(0));
        let now = at(&opts);
        match words[0] {
            "create" => {
                let session_id = self.id(&args[0]);
                let client_id = match ClientId::new(&opts["client"]) {
                    Ok(c) => c,
                    Err(e) => return format!("invalid {e}"),
                };
                let timeout = match Timeout::from_secs(opts["timeout"].parse().unwrap()) {
                    Ok(t) => t,
                    Err(e) => return format!("invalid {e}"),
                };
                let command = match opts.get("delay") {
                    None => Command::CreateSession { session_id, client_id, timeout, now },
                    Some(d) => {
                        let lock_delay = match LockDelay::from_secs(d.parse().unwrap()) {
                            Ok(d) => d,
                            Err(e) => return format!("invalid {e}"),
                        };
                        Command::CreateSessionWithLockDelay { session_id, client_id, timeout, lock_delay, now }
                    }
                };
                self.apply(command)
            }
            "wait" => {
                let session_id = self.id(&args[0]);
                let resource = Resource::new(&args[1]).unwrap();
                let deadline = UnixMillis(opts["until"].parse().unwrap());
                let mode = opts.get("mode").map(|m| Mode::parse(m).unwrap()).unwrap_or_default();
                let limit = match opts.get("limit").map(|l| Limit::new(l.parse().unwrap())).transpose() {
                    Ok(l) => l,
                    Err(e) => return format!("invalid {e}"),
                };
                let value = opts.get("value").map(|v| LockValue::new(v).unwrap());
                self.apply(Command::Wait { session_id, resource, mode, limit, value, deadline, now })
            }
            "cancel" => {
                let session_id = self.id(&args[0]);
                let resource = Resource::new(&args[1]).unwrap();
                self.apply(Command::CancelWait { session_id, resource, now })
            }
            "tick" => self.apply(Command::Tick { now }),
            "fence" => {
                let resource = Resource::new(&args[0]).unwrap();
                let token = FenceToken(opts["token"].parse().unwrap());
                let (valid, holders) = self.state.fence_check(&resource, token);
                let holders: Vec<String> =
                    holders.iter().map(|g| format!("{}:{}", self.name(&g.session_id), g.fence_token)).collect();
                format!("{} holders=[{}]", if valid { "valid" } else { "invalid" }, holders.join(","))
            }
            "queue" => {
                let resource = Resource::new(&args[0]).unwrap();
                let waiters: Vec<String> = self
                    .state
                    .queue(&resource)
                    .map(|w| format!("{}(since={} until={})", self.name(&w.session_id), w.since.0, w.deadline.0))
                    .collect();
                format!("[{}]", waiters.join(" "))
            }
            "create-raw" => {
                let session_id = self.id(&args[0]);
                let client_id: ClientId =
                    postcard::from_bytes(&postcard::to_allocvec(&opts["client"]).unwrap()).unwrap();
                let secs: u32 = opts["timeout"].parse().unwrap();
                let timeout: Timeout = postcard::from_bytes(&postcard::to_allocvec(&secs).unwrap()).unwrap();
                let outcome = self.state.apply(Command::CreateSession { session_id, client_id, timeout, now });
                self.show(outcome)
            }
            "delete" => {
                let session_id = self.id(&args[0]);
                self.apply(Command::DeleteSession { session_id, now })
            }
            "acquire" => {
                let session_id = self.id(&args[0]);
                let resource = Resource::new(&args[1]).unwrap();
                self.apply(Command::Acquire { session_id, resource, now })
            }
            "release" => {
                let session_id = self.id(&args[0]);
                let resource = Resource::new(&args[1]).unwrap();
                let fence_token = FenceToken::new(opts["token"].parse().unwrap()).unwrap();
                self.apply(Command::Release { session_id, resource, fence_token, now })
            }
            "expire" | "cleanup" => {
                let ids: Vec<SessionId> = args.iter().map(|a| self.id(a)).collect();
                let command = if words[0] == "expire" {
                    Command::ExpireSessions { session_ids: ids, now }
                } else {
                    Command::Cleanup { expire: ids, now }
                };
                self.apply(command)
            }
            "record" => {
                let keepalives = args
                    .iter()
                    .map(|a| {
                        let (name, t) = a.split_once('@').unwrap();
                        (self.id(name), UnixMillis(t.parse().unwrap()))
                    })
                    .collect();
                let outcome = self.state.apply(Command::RecordKeepalives { keepalives, now });
                self.show(outcome)
            }
            "session-keepalive" => {
                let session_id = self.id(&args[0]);
                format!("last_keepalive={}", self.state.session(&session_id).unwrap().last_keepalive.0)
            }
            "keepalive" => {
                let session_id = self.id(&args[0]);
                match self.state.live_session(&session_id) {
                    Ok(_) => "ok".to_string(),
                    Err(e) => self.show(Err(e)),
                }
            }
            "session" => {
                let session_id = self.id(&args[0]);
                match self.state.session(&session_id) {
                    None => "not found".to_string(),
                    Some(s) => {
                        let locks: Vec<String> = s.locks.iter().map(|r| r.to_string()).collect();
                        let waiting = if s.waiting.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " waiting=[{}]",
                                s.waiting.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")
                            )
                        };
                        let status = match s.status {
                            SessionStatus::Live => "live".to_string(),
                            SessionStatus::Expired { at } => format!("expired at={}", at.0),
                        };
                        format!(
                            "{status} client={} timeout={} created={} locks=[{}]{waiting}",
                            s.client_id,
                            s.timeout.secs(),
                            s.created_at.0,
                            locks.join(",")
                        )
                    }
                }
            }
            "lock" => {
                let resource = Resource::new(&args[0]).unwrap();
                match self.state.lock(&resource) {
                    None => match self.state.delayed_until(&resource) {
                        Some(until) => format!("free, delayed until={}", until.0),
                        None => "free".to_string(),
                    },
                    Some(l) if l.mode == Mode::Exclusive => {
                        let g = &l.grants(&resource)[0];
                        format!(
                            "held by {} token={} since={}",
                            self.name(&g.session_id),
                            g.fence_token,
                            g.acquired_at.0
                        )
                    }
                    Some(l) => {
                        let holders: Vec<String> = l
                            .grants(&resource)
                            .iter()
                            .map(|g| {
                                let value = g.value.as_ref().map(|v| format!("={}", v.as_str())).unwrap_or_default();
                                format!("{}:{}{value}", self.name(&g.session_id), g.fence_token)
                            })
                            .collect();
                        let limit = l.limit.map(|l| format!(" limit={}", l.get())).unwrap_or_default();
                        format!("shared by [{}]{limit}", holders.join(" "))
                    }
                }
            }
            "locks" => {
                let all: Vec<String> = self
                    .state
                    .locks()
                    .map(|(r, l)| {
                        let holders: Vec<String> = l
                            .grants(r)
                            .iter()
                            .map(|g| format!("{}:{}", self.name(&g.session_id), g.fence_token))
                            .collect();
                        format!("{r}:{}", holders.join("+"))
                    })
                    .collect();
                format!("[{}]", all.join(" "))
            }
            "stats" => {
                let s = self.state.stats();
                format!(
                    "active={} expired={} locks={} fence={}",
                    s.active_sessions, s.expired_sessions, s.total_locks, s.fence_counter
                )
            }
            "snapshot" => {
                let bytes = self.state.snapshot();
                let restored = LockState::restore(&bytes).expect("restore");
                assert_eq!(restored, self.state, "restore(snapshot) must be the identity");
                assert_eq!(restored.snapshot(), bytes, "snapshot of the restored state must be the same bytes");
                "ok".to_string()
            }
            other => panic!("unknown script command {other:?}"),
        }
    }

    /// Applies a command and shows its outcome, then the queue effects it had.
    fn apply(&mut self, command: Command) -> String {
        let mut effects = Vec::new();
        let outcome = self.state.apply_traced(command, &mut effects);
        let mut out = self.show(outcome);
        for effect in effects {
            match effect {
                Effect::LockAcquired { grant, queued: true, waited_ms, .. } => write!(
                    out,
                    "\nhanded {} to {} token={}{} waited={waited_ms}",
                    grant.resource,
                    self.name(&grant.session_id),
                    grant.fence_token,
                    if grant.mode == Mode::Shared { " (shared)" } else { "" }
                )
                .unwrap(),
                Effect::LockWaitEnded { resource, session_id, reason, waited_ms, .. } => write!(
                    out,
                    "\nwait ended {} {resource} {} waited={waited_ms}",
                    self.name(&session_id),
                    reason.as_str()
                )
                .unwrap(),
                _ => {}
            }
        }
        out
    }

    fn show(&self, outcome: Outcome) -> String {
        match outcome {
            Ok(Applied::SessionCreated { session_id, fresh }) => {
                format!("created {}{}", self.name(&session_id), if fresh { "" } else { " (existing)" })
            }
            Ok(Applied::SessionDeleted { session_id, released }) => {
                let r: Vec<String> = released.iter().map(|g| format!("{}:{}", g.resource, g.fence_token)).collect();
                format!("deleted {} released=[{}]", self.name(&session_id), r.join(","))
            }
            Ok(Applied::Acquired { grant, fresh }) => format!(
                "{} {} token={} at={}{}",
                if fresh { "acquired" } else { "already held" },
                grant.resource,
                grant.fence_token,
                grant.acquired_at.0,
                if grant.mode == Mode::Shared { " (shared)" } else { "" }
            ),
            Ok(Applied::Released { grant }) => format!("released {} token={}", grant.resource, grant.fence_token),
            Ok(Applied::KeepalivesRecorded { updated }) => format!("recorded updated={updated}"),
            Ok(Applied::Queued { resource, session_id, position, deadline, fresh }) => format!(
                "{} {resource} {} position={position} until={}",
                if fresh { "queued" } else { "still queued" },
                self.name(&session_id),
                deadline.0
            ),
            Ok(Applied::WaitCancelled { resource, session_id }) => {
                format!("cancelled {} {resource}", self.name(&session_id))
            }
            Ok(Applied::Ticked { timed_out, handed_off }) => {
                format!("ticked timed_out={timed_out} handed_off={handed_off}")
            }
            Ok(Applied::Expired { expired, removed }) => {
                let e: Vec<String> = expired
                    .iter()
                    .map(|x| {
                        let r: Vec<String> =
                            x.released.iter().map(|g| format!("{}:{}", g.resource, g.fence_token)).collect();
                        format!("{}[{}]", self.name(&x.session_id), r.join(","))
                    })
                    .collect();
                format!("expired=[{}] removed={removed}", e.join(" "))
            }
            Err(DomainError::SessionNotFound { session_id }) => {
                format!("error SESSION_NOT_FOUND {}", self.name(&session_id))
            }
            Err(DomainError::SessionExpired { session_id }) => {
                format!("error SESSION_EXPIRED {}", self.name(&session_id))
            }
            Err(DomainError::LockHeld {
                resource,
                holder,
                holder_client,
                fence_token,
                since,
                queue_length,
                holders_count,
            }) => {
                let mut queue = if queue_length > 0 { format!(" queue={queue_length}") } else { String::new() };
                if holders_count > 1 {
                    queue = format!(" holders={holders_count}{queue}");
                }
                format!(
                    "error LOCK_HELD {resource} by {} client={holder_client} token={fence_token} since={}{queue}",
                    self.name(&holder),
                    since.0
                )
            }
            Err(DomainError::LockDelayed { resource, until, queue_length }) => {
                format!("error LOCK_DELAYED {resource} until={} queue={queue_length}", until.0)
            }
            Err(DomainError::QueueFull { resource, queue_length }) => {
                format!("error QUEUE_FULL {resource} queue={queue_length}")
            }
            Err(DomainError::ModeConflict { session_id, resource, held }) => {
                format!("error MODE_CONFLICT {resource} by {} held={}", self.name(&session_id), held.as_str())
            }
            Err(DomainError::LimitMismatch { resource, limit }) => {
                format!(
                    "error LIMIT_MISMATCH {resource} limit={}",
                    limit.map_or("none".to_string(), |l| l.get().to_string())
                )
            }
            Err(DomainError::NotWaiting { session_id, resource }) => {
                format!("error NOT_WAITING {resource} by {}", self.name(&session_id))
            }
            Err(DomainError::LockNotHeld { session_id, resource }) => {
                format!("error LOCK_NOT_HELD {resource} by {}", self.name(&session_id))
            }
            Err(DomainError::FenceTokenMismatch { resource, held, presented, .. }) => {
                format!("error FENCE_TOKEN_MISMATCH {resource} held={held} presented={presented}")
            }
            Err(DomainError::Invalid(invalid)) => format!("error INVALID {invalid}"),
        }
    }
}

/// Runs one script and returns the transcript it produces (commands and their output).
fn transcript(text: &str) -> String {
    let mut script = Script { state: LockState::new(), names: BTreeMap::new() };
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('>') {
            continue;
        }
        let result = script.run(trimmed);
        script.state.check_invariants().unwrap_or_else(|e| panic!("invariant broken after `{trimmed}`: {e}"));
        writeln!(out, "{trimmed}").unwrap();
        for l in result.lines() {
            writeln!(out, "> {l}").unwrap();
        }
    }
    out
}

/// The script with comments and blank lines dropped: what `transcript` must reproduce.
fn expected(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        writeln!(out, "{trimmed}").unwrap();
    }
    out
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 5, "scenario files missing from {}", dir.display());
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let (got, want) = (transcript(&text), expected(&text));
        if let Some((n, (w, g))) = want.lines().zip(got.lines()).enumerate().find(|(_, (w, g))| w != g) {
            failures.push(format!("{}: line {} of the transcript\n  want: {w}\n  got:  {g}", file.display(), n + 1));
        } else if got.lines().count() != want.lines().count() {
            failures.push(format!("{}: transcript length differs\n--- want:\n{want}--- got:\n{got}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
