//! The command line (cli.md): `lockio serve` and `lockio dev`, with every flag also readable
//! from a `LOCKIO_*` environment variable, and the client commands (`status`, `session`,
//! `lock`, `stats`, `cleanup`, `exec`, `fence`, `elect`, `leader`) that `ctl` runs against a
//! cluster.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lockio_client::{FenceToken, SessionId};

use crate::raft::NodeId;

#[derive(Debug, Parser)]
#[command(name = "lockio", version, about = "lock.io: a Chubby-style lock service on Raft")]
pub struct Cli {
    /// Client commands also take `--endpoints` and `--json` here, before the command
    /// (`lockio --json stats`); the server commands ignore them.
    #[command(flatten)]
    pub connection: LeadingConnection,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a cluster.
    Serve(ServeArgs),
    /// Run a local cluster of child processes (3 nodes by default) for development.
    Dev(DevArgs),
    /// Show the cluster's members: each node's role, term and log, as it reports itself.
    Status(Connection),
    /// Create, inspect, keep alive or delete a session.
    Session(Group<SessionCommand>),
    /// Take, release or inspect a lock.
    Lock(Group<LockCommand>),
    /// Count sessions and locks; show the last fence token granted.
    Stats(Connection),
    /// Remove expired sessions now (they are otherwise kept for an hour).
    Cleanup(Connection),
    /// Run a command while holding a lock.
    ///
    /// Creates a session, takes the lock (waiting in its queue for up to --wait while it is
    /// held; runs waiting on one resource take turns in arrival order), runs CMD
    /// with LOCKIO_FENCE_TOKEN, LOCKIO_SESSION_ID and LOCKIO_RESOURCE set while keeping the
    /// session alive, passes SIGINT, SIGTERM and SIGHUP on to CMD, then releases the lock,
    /// deletes the session and exits with CMD's status (128+N if signal N ended it). CMD runs in
    /// a process group of its own (unless stdin is a terminal); signals go to the whole group,
    /// and what CMD leaves running there is stopped before the lock is released.
    ///
    /// If the session is lost while CMD runs (no keepalive acknowledged within --timeout, or
    /// the cluster expired it), CMD's group gets SIGTERM, then SIGKILL after --grace, and
    /// lockio exits 125. Exits 1 if CMD never ran (lock held past --wait, cluster unavailable), 126/127 if
    /// CMD cannot be run or found.
    Exec(ExecArgs),
    /// Check whether a fence token is a current holder's of a resource.
    Fence(Group<FenceCommand>),
    /// Run a command while this process is the elected leader on a resource.
    ///
    /// Creates a session and waits in the resource's queue (as long as it takes, in rounds of
    /// up to 300 s) for its exclusive lock, with --value stored with the grant (say, this
    /// instance's address). Once it leads, prints `leader: VALUE (fence token N)` and runs CMD
    /// as `lockio exec` does: with LOCKIO_FENCE_TOKEN, LOCKIO_SESSION_ID, LOCKIO_RESOURCE and
    /// LOCKIO_LEADER_VALUE set, signals passed on, CMD's process group stopped (SIGTERM, then
    /// SIGKILL after --grace) and exit 125 if leadership (the session) is lost. When CMD exits,
    /// it steps down (releases the lock, so the next candidate leads) and exits with CMD's status.
    Elect(ElectArgs),
    /// Who leads an election on a resource: its exclusive holder's value and fence token.
    Leader(LeaderArgs),
}

/// The three nodes `lockio dev` runs.
pub const DEV_ENDPOINTS: &str = "127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002";

/// `--endpoints` and `--json` before the command. Not read from the environment here, so a
/// flag given here wins over `LOCKIO_ENDPOINTS`.
#[derive(Debug, Clone, Args)]
pub struct LeadingConnection {
    #[arg(long, value_delimiter = ',', hide = true)]
    pub endpoints: Option<Vec<String>>,
    #[arg(long, hide = true)]
    pub json: bool,
}

/// Where the cluster is.
#[derive(Debug, Clone, Args)]
pub struct Endpoints {
    /// The cluster's HTTP endpoints, comma-separated (host:port or http://host:port); tried in
    /// turn, the leader's preferred. Default: the three `lockio dev` nodes,
    /// 127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002.
    #[arg(long, env = "LOCKIO_ENDPOINTS", value_delimiter = ',', global = true)]
    pub endpoints: Option<Vec<String>>,
}

/// How a client command reaches the cluster and prints.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    #[command(flatten)]
    pub endpoints: Endpoints,

    /// Print one JSON object (the HTTP API's field names) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Connection {
    /// The endpoints to use, with a flag before the command first (it is never from the
    /// environment), then this command's flag or `LOCKIO_ENDPOINTS`, then the dev cluster's.
    pub fn endpoints(&self, leading: &LeadingConnection) -> Vec<String> {
        let default = || DEV_ENDPOINTS.split(',').map(str::to_string).collect();
        leading.endpoints.clone().or_else(|| self.endpoints.endpoints.clone()).unwrap_or_else(default)
    }

    pub fn json(&self, leading: &LeadingConnection) -> bool {
        self.json || leading.json
    }
}

/// A group of client commands (`session ...`, `lock ...`), with the connection flags.
#[derive(Debug, Clone, Args)]
pub struct Group<T: Subcommand> {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: T,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SessionCommand {
    /// Create a session. Nothing keeps it alive: send `lockio session keepalive` within its
    /// timeout, or use `lockio exec`.
    Create {
        /// Who the session belongs to, as other clients will see it when they find a lock
        /// held. Default: lockio-cli@HOST.
        #[arg(long, default_value_t = default_client_id("lockio-cli", false), hide_default_value = true)]
        client_id: String,
        /// Seconds (5 to 3600) the session lives without a keepalive.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Seconds (0 to 60) each lock the session holds stays unavailable to others if the
        /// session expires (not when it is deleted or a lock is released).
        #[arg(long, default_value_t = 0)]
        lock_delay: u64,
        /// Print only the session id (for `SESSION=$(lockio session create -q)`).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a session: owner, timeout, time left, lock-delay, locks held and waited for.
    Get {
        /// The session's id, as `session create` printed it.
        session_id: SessionArg,
    },
    /// Send one keepalive.
    Keepalive {
        /// The session's id, as `session create` printed it.
        session_id: SessionArg,
    },
    /// Delete a session, releasing every lock it holds.
    Delete {
        /// The session's id, as `session create` printed it.
        session_id: SessionArg,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum LockCommand {
    /// Take RESOURCE for SESSION_ID, at once or after waiting in its queue (--wait); prints
    /// the fence token.
    Acquire {
        /// The session that is to hold the lock.
        session_id: SessionArg,
        /// The name of the thing to lock (1 to 255 bytes).
        resource: String,
        /// How long to wait in the lock's queue while others hold it or are ahead (e.g. 30,
        /// 1m; at most 300 s, rounded up to whole seconds). Default 0: one try.
        #[arg(long, default_value = "0", value_parser = parse_wait)]
        wait: Duration,
        /// Take it in shared mode: any number of sessions hold it together (readers), or at
        /// most --limit (a semaphore's permits).
        #[arg(long)]
        shared: bool,
        /// With --shared: at most N holders at once (1 to 10,000), a counting semaphore.
        #[arg(long, requires = "shared", value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: Option<u64>,
        /// A value stored with the grant (at most 1,024 bytes), shown with the holders, e.g. a
        /// leader's address.
        #[arg(long)]
        value: Option<String>,
        /// Print only the fence token (for `TOKEN=$(lockio lock acquire -q ...)`).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Release RESOURCE, held by SESSION_ID under --fence-token.
    Release {
        /// The session that holds the lock.
        session_id: SessionArg,
        /// The locked resource.
        resource: String,
        /// The token `lock acquire` printed: proof that this grant is the one released.
        #[arg(long, value_parser = parse_fence_token)]
        fence_token: FenceToken,
    },
    /// Who holds RESOURCE (every holder of a shared lock, with its fence token and value), in
    /// which mode, and who waits for it.
    Status {
        /// The resource to look at.
        resource: String,
    },
    /// Follow the changes to resources that start with PREFIX (every change without one): one
    /// line each, `ID TYPE RESOURCE key=value...`, or with --json the event's JSON, until
    /// interrupted. Starts with the recent history the node keeps, or after --after.
    Watch {
        /// Only resources whose name starts with this (e.g. `orders/`).
        prefix: Option<String>,
        /// Resume after this event id (INDEX.POSITION, as a line printed it): print only what
        /// came after it.
        #[arg(long)]
        after: Option<String>,
    },
}

/// `lockio exec`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,

    /// The resource to lock.
    pub resource: String,

    /// Session timeout in seconds (5 to 3600): how long the cluster keeps the lock if this
    /// process stops sending keepalives (crashed, stopped, cut off).
    #[arg(long, default_value_t = 15)]
    pub timeout: u64,

    /// How long to wait in the lock's queue while another session holds it (e.g. 30, 2.5, 1m;
    /// at most 300 s, rounded up to whole seconds). Default 0: one try.
    #[arg(long, default_value = "0", value_parser = parse_wait)]
    pub wait: Duration,

    /// After the session is lost (or CMD exited leaving processes in its group): how long
    /// they have between SIGTERM and SIGKILL.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub grace: Duration,

    /// The session's client id, which others see while this run holds the lock. Default:
    /// lockio-exec@HOST:PID.
    #[arg(long, default_value_t = default_client_id("lockio-exec", true), hide_default_value = true)]
    pub client_id: String,

    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum FenceCommand {
    /// Whether TOKEN is the fence token of a current holder of RESOURCE; prints `valid` or
    /// `invalid` and the holders. Exit status 0 when valid, 1 when not.
    Check {
        /// The resource the token was granted on.
        resource: String,
        /// The fence token to check.
        #[arg(value_parser = parse_fence_token)]
        fence_token: FenceToken,
    },
}

/// `lockio elect`.
#[derive(Debug, Clone, Args)]
pub struct ElectArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,

    /// The resource the candidates campaign on.
    pub resource: String,

    /// What the leader publishes (at most 1,024 bytes), e.g. its address: `lockio leader`
    /// prints it.
    #[arg(long)]
    pub value: String,

    /// Session timeout in seconds (5 to 3600): how long the cluster keeps the leadership if
    /// this process stops sending keepalives (crashed, stopped, cut off).
    #[arg(long, default_value_t = 15)]
    pub timeout: u64,

    /// After leadership is lost: how long CMD's process group has between SIGTERM and SIGKILL.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub grace: Duration,

    /// The session's client id. Default: lockio-elect@HOST:PID.
    #[arg(long, default_value_t = default_client_id("lockio-elect", true), hide_default_value = true)]
    pub client_id: String,

    /// The command to run while leading, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `lockio leader`.
#[derive(Debug, Clone, Args)]
pub struct LeaderArgs {
    #[command(flatten)]
    pub connection: Connection,

    /// The resource of the election.
    pub resource: String,
}

/// A session id argument, checked before anything is sent.
#[derive(Debug, Clone, Copy)]
pub struct SessionArg(pub SessionId);

impl std::str::FromStr for SessionArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SessionId::parse(s.trim()).map(SessionArg).ok_or_else(|| "not a session id (a UUID)".to_string())
    }
}

fn parse_fence_token(raw: &str) -> Result<FenceToken, String> {
    let n: u64 = raw.trim().parse().map_err(|_| "not a fence token (an integer of at least 1)".to_string())?;
    FenceToken::new(n).map_err(|e| e.reason)
}

/// Seconds as a number (`30`, `2.5`) or a duration with a unit (`500ms`, `1m`).
fn parse_secs(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    match raw.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| format!("`{raw}` is not a number of seconds")),
        Err(_) => humantime::parse_duration(raw)
            .map_err(|_| format!("`{raw}` is not a number of seconds or a duration like 500ms")),
    }
}

/// A wait in a lock's queue: `parse_secs`, at most 300 s (the cluster's limit).
fn parse_wait(raw: &str) -> Result<Duration, String> {
    let wait = parse_secs(raw)?;
    if wait > Duration::from_secs(300) {
        return Err(format!("`{}` is longer than 300 seconds, the longest wait", raw.trim()));
    }
    Ok(wait)
}

/// `PREFIX@HOST` or `PREFIX@HOST:PID`: who holds a lock, in a form a person can find.
fn default_client_id(prefix: &str, with_pid: bool) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_string()
    };
    if with_pid {
        format!("{prefix}@{host}:{}", std::process::id())
    } else {
        format!("{prefix}@{host}")
    }
}

/// `lockio serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// This node's id: a positive integer unique in the cluster.
    #[arg(long, env = "LOCKIO_ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: NodeId,

    /// Address the client API and dashboard listen on.
    #[arg(long, env = "LOCKIO_HTTP")]
    pub http: SocketAddr,

    /// Address the node-to-node transport listens on.
    #[arg(long, env = "LOCKIO_RAFT")]
    pub raft: SocketAddr,

    /// Every member of the initial cluster, this node included: ID=RAFT_ADDR,ID=RAFT_ADDR,...
    #[arg(long, env = "LOCKIO_PEERS", value_parser = parse_peers)]
    pub peers: Peers,

    /// Where this node keeps its durable state; created if missing.
    #[arg(long, env = "LOCKIO_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The HTTP address other nodes and browsers should use for this node, when it differs
    /// from --http (containers, NAT). Default: --http.
    #[arg(long, env = "LOCKIO_ADVERTISE_HTTP")]
    pub advertise_http: Option<String>,

    #[command(flatten)]
    pub timing: Timing,

    #[command(flatten)]
    pub connections: ConnectionLimits,

    /// Take a snapshot (and let the log be compacted) after this many log entries.
    #[arg(long, env = "LOCKIO_SNAPSHOT_EVERY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,

    /// How many recent events this node keeps for `GET /events`: a new subscriber's history,
    /// and how far back a stream can resume with `after` (older asks get `compacted`).
    #[arg(long, env = "LOCKIO_EVENT_HISTORY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub event_history: u64,

    /// How often a quiet `GET /events` stream gets a `progress` event (for tests).
    #[arg(long, env = "LOCKIO_PROGRESS_INTERVAL", default_value = "10s", value_parser = parse_interval, hide = true)]
    pub progress_interval: Duration,
}

/// A positive duration like `10s` or `500ms`.
fn parse_interval(raw: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw.trim()).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// The timing knobs, with defaults for a LAN (see README, "Timing").
#[derive(Debug, Clone, Args)]
pub struct Timing {
    /// How long a request may wait for a leader and a quorum before it answers 503.
    #[arg(long, env = "LOCKIO_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// How often the leader sends heartbeats.
    #[arg(long, env = "LOCKIO_HEARTBEAT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// The election timeout T: a follower that hears no leader for 2T (the leader's lease)
    /// plus a random time between T and 2T starts an election.
    #[arg(long, env = "LOCKIO_ELECTION_TIMEOUT", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub election_timeout: Duration,

    /// How often the leader looks for sessions whose timeout has passed.
    #[arg(long, env = "LOCKIO_SWEEP_INTERVAL", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,
}

/// What the two listeners (--http and --raft) allow a connection, so that slow or idle clients
/// cannot hold the node's connections (see README, "Running a cluster").
#[derive(Debug, Clone, Args)]
pub struct ConnectionLimits {
    /// How long a client has to send a request's head (the request line and headers), counted
    /// from the connection's opening or from the first byte of a request on a kept-alive one;
    /// a slower connection is closed.
    #[arg(long, env = "LOCKIO_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_interval)]
    pub header_read_timeout: Duration,

    /// How long a kept-alive connection may sit without a request before it is closed. Never
    /// applies while a request is in progress (a wait, the event stream). Longer than the idle
    /// time of the clients' connection pools (90 s for lockio's clients, 60 s between nodes), so
    /// a client never reuses a connection the node is closing.
    #[arg(long, env = "LOCKIO_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_interval)]
    pub idle_timeout: Duration,

    /// How many client API connections (--http) are served at once; further ones wait until one
    /// closes. Each waiting acquire holds one, and a queue takes 10,000 waiters.
    #[arg(long, env = "LOCKIO_MAX_CONNECTIONS", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// How many node-to-node connections (--raft) are served at once; further ones wait until
    /// one closes. A peer uses a few.
    #[arg(long, env = "LOCKIO_MAX_PEER_CONNECTIONS", default_value_t = 1_024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_peer_connections: u64,
}

/// `lockio dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// How many nodes to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,

    /// Where the nodes keep their data (one subdirectory each); reused on the next run.
    #[arg(long, default_value = "lockio-data")]
    pub data_dir: PathBuf,
}

/// The initial members: id → Raft address.
pub type Peers = BTreeMap<NodeId, String>;

fn parse_peers(raw: &str) -> Result<Peers, String> {
    let mut peers = Peers::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| format!("`{item}` is not ID=RAFT_ADDR"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("`{id}` is not a node id"))?;
        if id == 0 {
            return Err("node ids must be positive".into());
        }
        let addr = addr.trim();
        if addr.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
            return Err(format!("`{addr}` is not HOST:PORT"));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// (arguments, endpoints and json the command ends up with); LOCKIO_ENDPOINTS is unset in
    /// unit tests.
    #[test]
    fn connection_flags_go_before_or_after_the_command() {
        let dev: Vec<String> = DEV_ENDPOINTS.split(',').map(str::to_string).collect();
        let table: Vec<(&[&str], Vec<String>, bool)> = vec![
            (&["lockio", "stats"], dev.clone(), false),
            (&["lockio", "--json", "stats"], dev.clone(), true),
            (&["lockio", "stats", "--json", "--endpoints", "a:1,b:2"], vec!["a:1".into(), "b:2".into()], true),
            (
                &["lockio", "--endpoints", "a:1", "session", "get", "b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d"],
                vec!["a:1".into()],
                false,
            ),
            (
                &["lockio", "session", "--json", "get", "b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d", "--endpoints", "c:3"],
                vec!["c:3".into()],
                true,
            ),
        ];
        for (args, endpoints, json) in table {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let connection = match cli.command {
                Command::Stats(c) => c,
                Command::Session(c) => c.connection,
                other => panic!("{other:?}"),
            };
            let got = (connection.endpoints(&cli.connection), connection.json(&cli.connection));
            assert_eq!(got, (endpoints, json), "{args:?}");
        }
    }

    #[test]
    fn exec_takes_the_command_after_a_double_dash() {
        let cli =
            Cli::try_parse_from(["lockio", "exec", "res", "--wait", "2.5", "--", "sh", "-c", "echo --wait"]).unwrap();
        let Command::Exec(exec) = cli.command else { panic!() };
        assert_eq!(exec.resource, "res");
        assert_eq!(exec.wait, Duration::from_millis(2500));
        assert_eq!(exec.command, ["sh", "-c", "echo --wait"]);
        assert!(Cli::try_parse_from(["lockio", "exec", "res"]).is_err(), "CMD is required");
        assert!(Cli::try_parse_from(["lockio", "exec", "res", "sh"]).is_err(), "CMD comes after --");
        for bad in ["-1", "soon", "NaN"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_secs("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_wait("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_wait("301").is_err());
        assert!(
            Cli::try_parse_from(["lockio", "exec", "res", "--wait", "6m", "--", "true"]).is_err(),
            "longer than the cluster waits"
        );
    }

    #[test]
    fn lock_acquire_waits_and_session_create_takes_a_lock_delay() {
        let id = "b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d";
        let cli = Cli::try_parse_from(["lockio", "lock", "acquire", "--wait", "1m", id, "res"]).unwrap();
        let Command::Lock(Group { command: LockCommand::Acquire { wait, .. }, .. }) = cli.command else { panic!() };
        assert_eq!(wait, Duration::from_secs(60));
        let cli = Cli::try_parse_from(["lockio", "lock", "acquire", id, "res"]).unwrap();
        let Command::Lock(Group { command: LockCommand::Acquire { wait, .. }, .. }) = cli.command else { panic!() };
        assert_eq!(wait, Duration::ZERO, "a try-lock by default");
        let cli = Cli::try_parse_from(["lockio", "session", "create", "--lock-delay", "10"]).unwrap();
        let Command::Session(Group { command: SessionCommand::Create { lock_delay, .. }, .. }) = cli.command else {
            panic!()
        };
        assert_eq!(lock_delay, 10);
    }

    #[test]
    fn lock_acquire_takes_shared_limit_and_value_and_elect_takes_a_command() {
        let id = "b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d";
        let cli =
            Cli::try_parse_from(["lockio", "lock", "acquire", "--shared", "--limit", "3", "--value", "v", id, "r"])
                .unwrap();
        let Command::Lock(Group { command: LockCommand::Acquire { shared, limit, value, .. }, .. }) = cli.command
        else {
            panic!()
        };
        assert_eq!((shared, limit, value.as_deref()), (true, Some(3), Some("v")));
        assert!(Cli::try_parse_from(["lockio", "lock", "acquire", "--limit", "3", id, "r"]).is_err(), "needs --shared");
        assert!(Cli::try_parse_from(["lockio", "lock", "acquire", "--shared", "--limit", "0", id, "r"]).is_err());
        let cli = Cli::try_parse_from(["lockio", "elect", "sched", "--value", "a:1", "--", "sh", "-c", "x"]).unwrap();
        let Command::Elect(elect) = cli.command else { panic!() };
        assert_eq!((elect.resource.as_str(), elect.value.as_str()), ("sched", "a:1"));
        assert_eq!(elect.command, ["sh", "-c", "x"]);
        assert!(Cli::try_parse_from(["lockio", "elect", "sched", "--", "true"]).is_err(), "--value is required");
        assert!(Cli::try_parse_from(["lockio", "fence", "check", "r", "0"]).is_err(), "tokens start at 1");
    }

    #[test]
    fn peers_parse_and_refuse() {
        let p = parse_peers("1=127.0.0.1:4321, 2=lock-node-2:4321").unwrap();
        assert_eq!(p[&2], "lock-node-2:4321");
        for bad in ["", "1", "1=x", "0=a:1", "1=a:1,1=b:2", "x=a:1", "1=a:99999"] {
            assert!(parse_peers(bad).is_err(), "{bad:?}");
        }
    }
}
