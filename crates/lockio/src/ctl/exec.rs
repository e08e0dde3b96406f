//! `lockio exec`: runs a command only while this process holds a lock, and stops it when the
//! lock is lost. Owns the child process and the signals between it, the user and the session;
//! the session's state comes from `lockio_client::Session`.
//!
//! Exit status: CMD's own (128+N if a signal N ended it) when it ran to the end under the lock;
//! 1 when CMD never ran because the lock or the cluster could not be had; 125 when the session
//! was lost while CMD ran (CMD got SIGTERM, then SIGKILL after `--grace`); 126/127 when CMD
//! could not be started or found; 128+N when signal N arrived before CMD started.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use lockio_client::{Client, Error, LockGuard, Session, SessionState};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use super::fail;
use crate::cli::ExecArgs;

/// The exit status when the session was lost while CMD ran.
pub const LOST: i32 = 125;

/// How long cleanup (release, delete) may take once CMD is done; after that the session's
/// timeout releases the lock anyway.
const CLEANUP: Duration = Duration::from_secs(5);

pub async fn run(client: Client, args: ExecArgs) -> i32 {
    // Installed first, so that from now on SIGINT/SIGTERM/SIGHUP are ours to handle (passed to
    // CMD, or a clean exit before it starts) rather than killing this process with the lock held.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot handle signals: {e}")),
    };
    let session = match client.open_session(&args.client_id, Duration::from_secs(args.timeout)).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let guard = tokio::select! {
        taken = acquire(&session, &args.resource, args.wait) => match taken {
            Ok(guard) => guard,
            Err(e) => {
                close(session, None).await;
                return fail(&e);
            }
        },
        signo = signals.recv() => {
            close(session, None).await;
            return 128 + signo;
        }
    };
    let child = match spawn(&args, &session, &guard) {
        Ok(child) => child,
        Err(e) => {
            close(session, Some(guard)).await;
            let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
            eprintln!("lockio: cannot run {}: {e}", args.command[0].to_string_lossy());
            return code;
        }
    };
    let resource = guard.resource().to_string();
    match supervise(child, &session, &resource, &mut signals, args.grace).await {
        Ok(Ended::Exited(status)) => {
            // A child that exited at the moment the session was lost may have run unprotected.
            if let SessionState::Expired(why) = session.state() {
                eprintln!("lockio: lost the lock on {resource} as CMD exited: session {} expired ({why})", session.id());
                close(session, None).await;
                return LOST;
            }
            close(session, Some(guard)).await;
            exit_code(status)
        }
        Ok(Ended::Lost) => {
            close(session, None).await;
            LOST
        }
        Err(e) => {
            eprintln!("lockio: lost track of CMD: {e}");
            close(session, Some(guard)).await;
            1
        }
    }
}

/// Try-lock until it is granted or `wait` has passed, backing off from 100 ms to 1 s.
async fn acquire(session: &Session, resource: &str, wait: Duration) -> Result<LockGuard, Error> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(100);
    loop {
        match session.lock(resource).await {
            Err(Error::LockHeld { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(pause.min(deadline - Instant::now())).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            result => return result,
        }
    }
}

fn spawn(args: &ExecArgs, session: &Session, guard: &LockGuard) -> std::io::Result<Child> {
    Command::new(&args.command[0])
        .args(&args.command[1..])
        .env("LOCKIO_FENCE_TOKEN", guard.fence_token().to_string())
        .env("LOCKIO_SESSION_ID", session.id().to_string())
        .env("LOCKIO_RESOURCE", guard.resource().as_str())
        .spawn()
}

enum Ended {
    /// CMD exited by itself (or by a signal passed on to it).
    Exited(ExitStatus),
    /// The session was lost; CMD was stopped.
    Lost,
}

/// Waits for CMD while passing signals on to it and watching the session; stops CMD when the
/// session is lost.
async fn supervise(mut child: Child, session: &Session, resource: &str, signals: &mut Signals, grace: Duration) -> std::io::Result<Ended> {
    let pid = child.id().expect("a running child has a pid") as libc::pid_t;
    let mut state = session.watch();
    let mut warned = false;
    loop {
        tokio::select! {
            status = child.wait() => return status.map(Ended::Exited),
            signo = signals.recv() => {
                // SAFETY: kill(2) on our own child's pid; it has not been reaped (wait above has not returned).
                unsafe { libc::kill(pid, signo) };
            }
            _ = state.changed() => match *state.borrow_and_update() {
                SessionState::Alive if warned => {
                    warned = false;
                    eprintln!("lockio: keepalives for session {} are acknowledged again", session.id());
                }
                SessionState::InJeopardy if !warned => {
                    warned = true;
                    eprintln!(
                        "lockio: warning: keepalives for session {} are failing; CMD is stopped if none is acknowledged within the {}s timeout",
                        session.id(),
                        session.timeout().as_secs()
                    );
                }
                SessionState::Expired(why) => {
                    eprintln!("lockio: lost the lock on {resource}: session {} expired ({why}); sending SIGTERM to CMD (pid {pid})", session.id());
                    terminate(&mut child, pid, grace).await?;
                    return Ok(Ended::Lost);
                }
                _ => {}
            },
        }
    }
}

/// SIGTERM, then SIGKILL if CMD has not exited after `grace`.
async fn terminate(child: &mut Child, pid: libc::pid_t, grace: Duration) -> std::io::Result<ExitStatus> {
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            eprintln!("lockio: CMD (pid {pid}) did not exit within {}s of SIGTERM; sending SIGKILL", grace.as_secs_f64());
            child.kill().await?;
            child.wait().await
        }
    }
}

/// Releases the lock (if still ours to release) and deletes the session, within `CLEANUP`; a
/// failure is a warning, since the session's timeout releases everything anyway.
async fn close(session: Session, guard: Option<LockGuard>) {
    let (id, timeout) = (session.id(), session.timeout());
    let cleanup = async {
        if let Some(guard) = guard {
            let resource = guard.resource().to_string();
            if let Err(e) = guard.release().await {
                eprintln!("lockio: warning: could not release {resource}: {e}");
            }
        }
        session.close().await
    };
    match tokio::time::timeout(CLEANUP, cleanup).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("lockio: warning: could not delete session {id} ({e}); it expires within {}s", timeout.as_secs()),
        Err(_) => eprintln!("lockio: warning: could not delete session {id} in time; it expires within {}s", timeout.as_secs()),
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

/// The signals `lockio exec` passes on to CMD.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal's number.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
            _ = self.hangup.recv() => libc::SIGHUP,
        }
    }
}
