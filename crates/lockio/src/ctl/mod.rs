//! The client commands of `lockio` (`status`, `session`, `lock`, `stats`, `cleanup`, `exec`):
//! each makes a few `lockio-client` calls and prints through `output` (`lock watch` prints as it
//! goes, in `watch`). An error is one line on stderr and exit status 1. Knows nothing of the
//! server's insides: it is a client like any other.

mod exec;
mod output;
mod watch;

use std::time::{Duration, SystemTime};

use lockio_client::{Client, Error};

use crate::cli::{Command, Connection, LeadingConnection, LockCommand, SessionCommand};
use output::{MemberRow, Output};

/// What to do, once the connection flags are set aside.
enum Action {
    Status,
    Session(SessionCommand),
    Lock(LockCommand),
    Stats,
    Cleanup,
    Exec(crate::cli::ExecArgs),
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
        let output = match action {
            Action::Exec(args) => return exec::run(client, args).await,
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
                0
            }
            Ok(Some(out)) => {
                print!("{}", out.human);
                0
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
        LockCommand::Acquire { session_id, resource, wait, quiet } => {
            // A wait of zero is a try-lock.
            let grant = client.acquire_wait(session_id.0, &resource, whole_secs_up(wait)).await?;
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
            let status = client.lock_status(&resource).await?;
            // The holder's name, if the answer lacks it, is on its session; without it the
            // answer is still useful.
            let client_id = match &status.holder {
                Some(h) if h.client_id.is_some() => h.client_id.clone(),
                Some(h) => client.session_info(h.session_id).await.ok().map(|s| s.client_id),
                None => None,
            };
            output::lock_status(&status, client_id.as_ref(), SystemTime::now())
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
