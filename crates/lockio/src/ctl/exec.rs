//! `lockio exec`: runs a command only while this process holds a lock, and stops it when the
//! lock is lost; `lockio elect`: the same, with the lock an election's (waited for as long as it
//! takes, with a value that says who leads). Owns the child process (and the process group it runs in) and the signals
//! between it, the user and the session; the session's state comes from `lockio_client::Session`.
//!
//! Exit status: CMD's own (128+N if a signal N ended it) when it ran to the end under the lock;
//! 1 when CMD never ran because the lock or the cluster could not be had; 125 when the session
//! was lost while CMD ran (CMD got SIGTERM, then SIGKILL after `--grace`); 126/127 when CMD
//! could not be started or found; 128+N when signal N arrived before CMD started.

use std::io::IsTerminal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use std::ffi::OsString;
use std::io::Write;

use lockio_client::{Client, Error, LockGuard, Session, SessionState};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{fail, whole_secs_up};
use crate::cli::{ElectArgs, ExecArgs};

/// The exit status when the session was lost while CMD ran.
pub const LOST: i32 = 125;

/// How long cleanup (release, delete) may take once CMD is done; after that the session's
/// timeout releases the lock anyway.
const CLEANUP: Duration = Duration::from_secs(5);

/// Installs the signal handlers, then opens the session; or the exit status if either failed
/// or a signal came first.
async fn start(client: &Client, client_id: &str, timeout: u64) -> Result<(Signals, Session), i32> {
    // Installed first, so that from now on SIGINT/SIGTERM/SIGHUP are ours to handle (passed to
    // CMD, or a clean exit before it starts) rather than killing this process with the lock held.
    let mut signals = Signals::install().map_err(|e| fail(&format!("cannot handle signals: {e}")))?;
    let session = tokio::select! {
        opened = client.open_session(client_id, Duration::from_secs(timeout)) => opened.map_err(|e| fail(&e))?,
        // A create cut short holds no lock; a session it may have made expires by itself.
        signo = signals.recv() => return Err(128 + signo),
    };
    Ok((signals, session))
}

pub async fn run(client: Client, args: ExecArgs) -> i32 {
    let (mut signals, session) = match start(&client, &args.client_id, args.timeout).await {
        Ok(started) => started,
        Err(status) => return status,
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
    let what = format!("the lock on {}", guard.resource());
    under_lock(session, guard, &args.command, &[], &what, args.grace, &mut signals).await
}

/// How long one round of a campaign waits in the queue: the longest wait the cluster takes.
const CAMPAIGN_ROUND: Duration = Duration::from_secs(300);

/// `lockio elect`: opens a session, waits (in rounds of `CAMPAIGN_ROUND`, for as long as it
/// takes) for the exclusive lock with `--value`, prints `leader: VALUE (fence token N)`, and
/// runs CMD under the lock as `exec` does.
pub async fn elect(client: Client, args: ElectArgs) -> i32 {
    let (mut signals, session) = match start(&client, &args.client_id, args.timeout).await {
        Ok(started) => started,
        Err(status) => return status,
    };
    let guard = loop {
        tokio::select! {
            taken = session.campaign(&args.resource, &args.value, CAMPAIGN_ROUND) => match taken {
                Ok(guard) => break guard,
                // Someone else still leads (or the round ended as it was freed): another round,
                // from the back of the queue again.
                Err(Error::LockHeld { .. } | Error::WaitTimeout { .. }) => continue,
                Err(e) => {
                    close(session, None).await;
                    return fail(&e);
                }
            },
            signo = signals.recv() => {
                close(session, None).await;
                return 128 + signo;
            }
        }
    };
    let mut stdout = std::io::stdout();
    let line = super::output::leader_line(Some(&args.value), guard.fence_token());
    // Said before CMD runs, so that it comes first; a closed stdout does not stop the leader.
    let _ = stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush());
    let what = format!("leadership of {}", guard.resource());
    let env = [("LOCKIO_LEADER_VALUE", args.value.clone())];
    under_lock(session, guard, &args.command, &env, &what, args.grace, &mut signals).await
}

/// Runs `command` while `guard` is held, supervises it, and cleans up: the part `exec` and
/// `elect` share. `what` names what is held, for the messages (`the lock on r`). Returns the
/// exit status.
async fn under_lock(
    session: Session,
    guard: LockGuard,
    command: &[OsString],
    env: &[(&str, String)],
    what: &str,
    grace: Duration,
    signals: &mut Signals,
) -> i32 {
    let mut job = match Job::spawn(command, env, &session, &guard) {
        Ok(job) => job,
        Err(e) => {
            close(session, Some(guard)).await;
            let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
            eprintln!("lockio: cannot run {}: {e}", command[0].to_string_lossy());
            return code;
        }
    };
    match supervise(&mut job, &session, what, signals, grace).await {
        Ok(Ended::Exited(status)) => {
            // Nothing CMD started may outlive the lock: what is left of its group goes first.
            if job.group_alive() {
                eprintln!(
                    "lockio: CMD exited, leaving processes in its process group {}; sending them SIGTERM",
                    job.pid
                );
                if let Err(e) = job.stop(grace).await {
                    eprintln!("lockio: warning: stopping CMD's process group: {e}");
                }
            }
            // A child that exited at the moment the session was lost may have run unprotected.
            if let SessionState::Expired(why) = session.state() {
                eprintln!("lockio: lost {what} as CMD exited: session {} expired ({why})", session.id());
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

/// Takes the lock, waiting in its queue for up to `wait` (rounded up to whole seconds): one long
/// request that the cluster answers when the runs ahead are done with the lock, sent again with
/// the time left if the connection breaks (`Session::lock_wait`). A `wait` of zero is one try.
async fn acquire(session: &Session, resource: &str, wait: Duration) -> Result<LockGuard, Error> {
    session.lock_wait(resource, whole_secs_up(wait)).await
}

/// CMD's processes. When this process's stdin is not a terminal, CMD runs in a process group
/// of its own and every signal goes to the whole group, so whatever CMD starts stops with it.
/// From a terminal CMD stays in the terminal's foreground group (so it can read the terminal,
/// and Ctrl-C reaches it directly), and only CMD itself is signalled.
struct Job {
    child: Child,
    /// CMD's pid (`child.id()` forgets it once CMD is reaped), and its process group's id when
    /// `own_group`.
    pid: libc::pid_t,
    own_group: bool,
}

impl Job {
    fn spawn(cmd: &[OsString], env: &[(&str, String)], session: &Session, guard: &LockGuard) -> std::io::Result<Job> {
        let own_group = !std::io::stdin().is_terminal();
        let mut command = Command::new(&cmd[0]);
        command
            .args(&cmd[1..])
            .env("LOCKIO_FENCE_TOKEN", guard.fence_token().to_string())
            .env("LOCKIO_SESSION_ID", session.id().to_string())
            .env("LOCKIO_RESOURCE", guard.resource().as_str())
            .envs(env.iter().map(|(k, v)| (k, v)));
        if own_group {
            command.process_group(0);
        }
        let child = command.spawn()?;
        let pid = child.id().expect("a child just spawned has a pid") as libc::pid_t;
        Ok(Job { child, pid, own_group })
    }

    /// Waits for CMD itself (cancel safe; once reaped, its status again).
    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Sends `signo` to CMD's process group, or to CMD alone when it shares ours (and only
    /// while it has not been reaped, so that the pid is still CMD's).
    fn signal(&self, signo: i32) {
        if self.own_group {
            // SAFETY: kill(2) on the process group CMD created, only while CMD runs or something
            // was just seen running in the group; the id stays reserved while any member (a
            // zombie included) is left, and with none left the call fails with ESRCH.
            unsafe { libc::kill(-self.pid, signo) };
        } else if self.child.id().is_some() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(self.pid, signo) };
        }
    }

    /// Whether any process is still running in CMD's own process group (CMD included, until
    /// it exits). Zombies do not count: an orphan's zombie waits for init, which may be slow
    /// to reap it or never do so (in a container).
    fn group_alive(&self) -> bool {
        self.own_group && group_has_running_process(self.pid)
    }

    /// SIGTERM to CMD (or its group), then SIGKILL to whatever is left after `grace`.
    async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        let gone = tokio::time::timeout(grace, async {
            let status = self.wait().await?;
            while self.group_alive() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, std::io::Error>(status)
        })
        .await;
        match gone {
            Ok(status) => status,
            Err(_) => {
                let what = if self.own_group {
                    format!("CMD's process group {}", self.pid)
                } else {
                    format!("CMD (pid {})", self.pid)
                };
                eprintln!("lockio: {what} did not exit within {}s of SIGTERM; sending SIGKILL", grace.as_secs_f64());
                self.signal(libc::SIGKILL);
                self.wait().await
            }
        }
    }
}

enum Ended {
    /// CMD exited by itself (or by a signal passed on to it).
    Exited(ExitStatus),
    /// The session was lost; CMD was stopped.
    Lost,
}

/// Waits for CMD while passing signals on to it and watching the session; stops CMD when the
/// session is lost.
async fn supervise(
    job: &mut Job,
    session: &Session,
    what: &str,
    signals: &mut Signals,
    grace: Duration,
) -> std::io::Result<Ended> {
    let mut state = session.watch();
    let mut warned = false;
    loop {
        tokio::select! {
            status = job.wait() => return status.map(Ended::Exited),
            signo = signals.recv() => job.signal(signo),
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
                    eprintln!("lockio: lost {what}: session {} expired ({why}); sending SIGTERM to CMD (pid {})", session.id(), job.pid);
                    // Lost either way: a failure to stop CMD is reported, not a reason to
                    // release a lock the session no longer holds.
                    if let Err(e) = job.stop(grace).await {
                        eprintln!("lockio: warning: stopping CMD: {e}");
                    }
                    return Ok(Ended::Lost);
                }
                _ => {}
            },
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
        Ok(Err(e)) => {
            eprintln!("lockio: warning: could not delete session {id} ({e}); it expires within {}s", timeout.as_secs())
        }
        Err(_) => eprintln!(
            "lockio: warning: could not delete session {id} in time; it expires within {}s",
            timeout.as_secs()
        ),
    }
}

/// Whether a process other than a zombie is in process group `pgid`, from `/proc` (or, where
/// that cannot be read, whether the group exists at all).
fn group_has_running_process(pgid: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // SAFETY: signal 0 only checks that the group exists.
        return unsafe { libc::kill(-pgid, 0) } == 0;
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .any(|stat| running_in_group(&stat, pgid))
}

/// From one `/proc/PID/stat` line: the process is in group `pgid` and not a zombie (or dead).
fn running_in_group(stat: &str, pgid: libc::pid_t) -> bool {
    // "PID (COMM) STATE PPID PGRP ...", where COMM may itself hold spaces and parentheses.
    let Some((_, after_comm)) = stat.rsplit_once(')') else { return false };
    let mut fields = after_comm.split_whitespace();
    let state = fields.next();
    let group = fields.nth(1).and_then(|g| g.parse::<libc::pid_t>().ok());
    group == Some(pgid) && !matches!(state, Some("Z" | "X" | "x"))
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

#[cfg(test)]
mod tests {
    use super::running_in_group;

    #[test]
    fn a_process_counts_while_it_runs_in_the_group() {
        assert!(running_in_group("4242 (sleep) S 1 4240 4240 0 -1 4194304 99 0", 4240));
        assert!(running_in_group("4242 (my (odd) name) R 1 4240 4240 0", 4240));
        assert!(!running_in_group("4242 (sleep) Z 1 4240 4240 0", 4240), "a zombie");
        assert!(!running_in_group("4242 (sleep) S 1 4241 4241 0", 4240), "another group");
        assert!(!running_in_group("garbage", 4240));
    }
}
