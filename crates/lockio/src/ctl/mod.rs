//! The client commands of `lockio` (`status`, `session`, `lock`, `stats`, `cleanup`, `fence`,
//! `leader`, `exec`, `elect`): each makes a few `lockio-client` calls and prints through `output`
//! (`lock watch` prints as it goes, in `watch`; `exec` and `elect` run a command, in `exec`). An error is one line on stderr and exit status 1. Knows nothing of the
//! server's insides: it is a client like any other.

mod exec;
mod output;
mod watch;

use std::time::{Duration, SystemTime};

use lockio_client::{Client, Error, LockOptions, Mode};

use crate::cli::{Command, Connection, FenceCommand, LeadingConnection, LockCommand, SessionCommand};
use output::{MemberRow, Output};

/// What to do, once the connection flags are set aside.
enum Action {
    Status,
    Session(SessionCommand),
    Lock(LockCommand),
    Stats,
    Cleanup,
    Exec(crate::cli::ExecArgs),
    Elect(crate::cli::ElectArgs),
    Fence(FenceCommand),
    Leader(String),
}

/// Runs a client command; returns the process's exit status.
pub fn run(command: Command, leading: LeadingConnection) -> i32 {
    let (connection, action): (Connection, Action) = match command {
        Command::Status(c) => (c, Action::Status),
        Command::Session(c) => (c.connection, Action::Session(c.command)),
        Command::Lock(c) => (c.connection, Action::Lock(c.command)),
        Command::Stats(c) => (c, Action::Stats),
        Command::Cleanup(c) => (c, Action::Cleanup),
        // exec prints nothing of its own but errors, so it has no --json.
        Command::Exec(c) => (Connection { endpoints: c.endpoints.clone(), json: false }, Action::Exec(c)),
        Command::Elect(c) => (Connection { endpoints: c.endpoints.clone(), json: false }, Action::Elect(c)),
        Command::Fence(c) => (c.connection, Action::Fence(c.command)),
        Command::Leader(c) => (c.connection, Action::Leader(c.resource)),
        Command::Serve(_) | Command::Dev(_) => unreachable!("server commands are not client commands"),
    };
    let (endpoints, json) = (connection.endpoints(&leading), connection.json(&leading));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let client = match Client::new(endpoints) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        // Commands whose exit status says something besides success: 1 for an invalid token
        // or nobody leading, with the answer printed all the same.
        let mut code = 0;
        let output = match action {
            Action::Exec(args) => return exec::run(client, args).await,
            Action::Elect(args) => return exec::elect(client, args).await,
            Action::Fence(FenceCommand::Check { resource, fence_token }) => {
                client.fence_check(&resource, fence_token).await.map(|check| {
                    code = if check.valid { 0 } else { 1 };
                    Some(output::fence_check(&check, SystemTime::now()))
                })
            }
            Action::Leader(resource) => client.leader(&resource).await.map(|leader| {
                code = if leader.is_some() { 0 } else { 1 };
                Some(output::leader(&resource, leader.as_ref()))
            }),
            Action::Lock(LockCommand::Watch { prefix, after }) => return watch::run(client, prefix, after, json).await,
            Action::Status => status(&client).await,
            Action::Session(c) => session(&client, c).await,
            Action::Lock(c) => lock(&client, c).await,
            Action::Stats => client.stats().await.map(|s| Some(output::stats(&s))),
            Action::Cleanup => client.cleanup().await.map(|n| Some(output::cleaned(n))),
        };
        match output {
            Ok(Some(out)) if json => {
                println!("{}", out.json);
                code
            }
            Ok(Some(out)) => {
                print!("{}", out.human);
                code
            }
            Ok(None) => 0,
            Err(e) => fail(&e),
        }
    })
}

/// Prints the one-line error and gives the exit status for it.
pub(crate) fn fail(e: &dyn std::fmt::Display) -> i32 {
    eprintln!("lockio: {e}");
    1
}

async fn session(client: &Client, command: SessionCommand) -> Result<Option<Output>, Error> {
    let now = SystemTime::now();
    Ok(Some(match command {
        SessionCommand::Create { client_id, timeout, lock_delay, quiet } => {
            let created = client
                .create_session_with_lock_delay(
                    &client_id,
                    Duration::from_secs(timeout),
                    Duration::from_secs(lock_delay),
                )
                .await?;
            if quiet {
                println!("{}", created.session_id);
                return Ok(None);
            }
            output::session_created(&created)
        }
        SessionCommand::Get { session_id } => output::session(&client.session_info(session_id.0).await?, now),
        SessionCommand::Keepalive { session_id } => output::kept_alive(&client.keepalive(session_id.0).await?),
        SessionCommand::Delete { session_id } => {
            client.delete_session(session_id.0).await?;
            output::deleted(session_id.0)
        }
    }))
}

async fn lock(client: &Client, command: LockCommand) -> Result<Option<Output>, Error> {
    Ok(Some(match command {
        LockCommand::Acquire { session_id, resource, wait, shared, limit, value, quiet } => {
            // A wait of zero is a try-lock.
            let options = LockOptions {
                mode: if shared { Mode::Shared } else { Mode::Exclusive },
                limit,
                value,
                wait: whole_secs_up(wait),
            };
            let grant = client.acquire_with(session_id.0, &resource, &options).await?;
            if quiet {
                println!("{}", grant.fence_token);
                return Ok(None);
            }
            output::acquired(&grant)
        }
        LockCommand::Release { session_id, resource, fence_token } => {
            client.release(session_id.0, &resource, fence_token).await?;
            output::released(session_id.0, &resource, fence_token)
        }
        LockCommand::Watch { .. } => unreachable!("a watch prints as it goes (`watch::run`)"),
        LockCommand::Status { resource } => {
            output::lock_status(&client.lock_status(&resource).await?, SystemTime::now())
        }
    }))
}

/// A wait as the cluster counts it: whole seconds, rounded up, so that it is never shorter
/// than asked.
pub(crate) fn whole_secs_up(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() != 0))
}

/// The members as any node lists them, each asked for its own report, all at once.
async fn status(client: &Client) -> Result<Option<Output>, Error> {
    let listing = client.cluster_status().await?;
    let reports = futures_util::future::join_all(listing.members.iter().map(|member| async move {
        let Some(address) = &member.http else { return Err("its HTTP address is not known yet".to_string()) };
        client.node_status(address).await.map_err(|e| match e {
            Error::Unavailable { tried, .. } => tried.into_iter().map(|a| a.failure).collect::<Vec<_>>().join("; "),
            other => other.to_string(),
        })
    }))
    .await;
    // Lag is only in the leader's view; take it from the leader's own report when there is one.
    let leader_view = reports.iter().flatten().find(|s| s.state == "LEADER").map(|s| &s.members);
    let rows: Vec<MemberRow> = listing
        .members
        .iter()
        .zip(reports.iter())
        .map(|(m, report)| MemberRow {
            id: m.id,
            raft: m.raft.clone(),
            http: m.http.clone(),
            report: report.clone(),
            lag: match leader_view {
                Some(view) => view.iter().find(|x| x.id == m.id).and_then(|x| x.lag),
                None => m.lag,
            },
        })
        .collect();
    Ok(Some(output::members(&rows)))
}
