//! The dashboard in a real headless Chromium against a real 3-node cluster: it loads without
//! JavaScript errors, shows the members and the one leader, shows a lock taken through the API
//! in its table and its event log, a client waiting for it (queue length, the lock's queue, the
//! waiter count, the events of the wait and of the hand-off), a lock under lock-delay after its
//! holder's session expired, a semaphore's shared holders, use, values and queue modes, an
//! election's value, the events' resource-prefix filter, and follows a failover without a
//! reload.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::{acquire, call, create_session, Cluster};

const MEMBERS: &str = "return document.querySelectorAll('#members .member').length";

/// The locks table's row of `resource` (a JavaScript expression; `null` if it is not shown).
fn lock_row(resource: &str) -> String {
    format!("document.querySelector('#locks tr.lock[data-resource=\"{resource}\"]')")
}

/// The open queue under the row of `resource` (a JavaScript expression).
fn lock_detail(resource: &str) -> String {
    format!("document.querySelector('#locks tr.detail[data-detail=\"{resource}\"]')")
}

fn leader_is(id: u64) -> String {
    format!(
        "const l = document.querySelectorAll('#members .member.leader'); \
         return l.length === 1 && l[0].dataset.node === '{id}'"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_cluster_its_locks_and_a_failover() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let served_by = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let browser = Browser::start(1280, 1000).await;
    browser.goto(&cluster.url(served_by, "/")).await;

    browser.wait_for(Duration::from_secs(10), "three member cards", &format!("{MEMBERS} === 3")).await;
    browser.wait_for(Duration::from_secs(10), "exactly one leader card, the leader", &leader_is(leader)).await;
    let links = browser.eval("return [...document.querySelectorAll('#members a')].map(a => a.href)").await;
    for id in 1..=3 {
        assert!(links.to_string().contains(&cluster.base(id)), "no link to node {id}'s dashboard in {links}");
    }

    // A session that expires holding a lock, with a lock-delay: created first, so that its 5 s
    // timeout runs out while the queue is tested; the lock is then delayed for 10 s.
    let doomed = call(
        "POST",
        &cluster.url(leader, "/sessions"),
        Some(json!({"client_id": "delayed-client", "timeout": 5, "lock_delay": 10})),
    )
    .await;
    assert_eq!(doomed.status, 201, "{}", doomed.text);
    let doomed_grant = acquire(&cluster.base(leader), &doomed.str("session_id"), "delayed-resource").await;
    assert_eq!(doomed_grant.status, 201, "{}", doomed_grant.text);

    let session = create_session(&cluster.base(leader), "dashboard-client", 60).await;
    let grant = acquire(&cluster.base(served_by), &session, "dashboard-resource").await;
    assert_eq!(grant.status, 201);
    let token = grant.body["fence_token"].as_u64().unwrap();
    browser
        .wait_for(
            Duration::from_secs(10),
            "the lock in the locks table",
            &format!(
                "return [...document.querySelectorAll('#locks tbody tr.lock')].some(r => \
                   r.textContent.includes('dashboard-resource') && r.textContent.includes('dashboard-client') \
                   && r.cells[3].textContent === '{token}')"
            ),
        )
        .await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the acquisition in the event log",
            "return [...document.querySelectorAll('#events li[data-type=lock_acquired]')].some(li => \
               li.textContent.includes('dashboard-resource'))",
        )
        .await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the session in the sessions table",
            "return document.querySelector('#sessions tbody').textContent.includes('dashboard-client')",
        )
        .await;

    // A second session waits for the lock (a long-poll through a follower): the row shows its
    // queue length, the stats the waiter, the lock's queue (opened by a click) the waiting
    // client, and the event log the wait.
    let waiter = create_session(&cluster.base(leader), "dashboard-waiter", 60).await;
    let wait_url = cluster.url(served_by, &format!("/sessions/{waiter}/locks/dashboard-resource"));
    let waiting = tokio::spawn(async move { call("POST", &wait_url, Some(json!({"wait": 30}))).await });
    let row = lock_row("dashboard-resource");
    let detail = lock_detail("dashboard-resource");
    browser
        .wait_for(
            Duration::from_secs(10),
            "queue length 1 in the lock's row",
            &format!("const r = {row}; return r !== null && r.querySelector('td.queue').textContent === '1'"),
        )
        .await;
    browser
        .wait_for(
            Duration::from_secs(5),
            "one waiter in the stats",
            "return document.getElementById('stat-waiters').textContent === '1'",
        )
        .await;
    browser.eval(&format!("{row}.click(); return true")).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the waiter in the lock's queue",
            &format!(
                "const d = {detail}; if (d === null) return false; \
                 const w = d.querySelectorAll('table.waiters tbody tr'); \
                 return d.textContent.includes('held by client dashboard-client') && w.length === 1 \
                   && w[0].dataset.session === '{waiter}' && w[0].cells[1].textContent === 'dashboard-waiter'"
            ),
        )
        .await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the wait in the event log",
            "return [...document.querySelectorAll('#events li[data-type=lock_waiting]')].some(li => \
               li.textContent.includes('client dashboard-waiter waits for dashboard-resource (place 1, until'))",
        )
        .await;
    browser
        .wait_for(
            Duration::from_secs(5),
            "the wait in the sessions table",
            "return document.querySelector('#sessions tbody').textContent.includes('waiting for dashboard-resource')",
        )
        .await;

    // The holder releases: the lock goes to the waiter, and the page shows the hand-off.
    let release_url = cluster.url(leader, &format!("/sessions/{session}/locks/dashboard-resource"));
    let released = call("DELETE", &release_url, Some(json!({"fence_token": token}))).await;
    assert_eq!(released.status, 200, "{}", released.text);
    let handed = waiting.await.unwrap();
    assert_eq!(handed.status, 201, "{}", handed.text);
    let handed_token = handed.body["fence_token"].as_u64().unwrap();
    assert!(handed_token > token, "{}", handed.text);
    browser
        .wait_for(
            Duration::from_secs(10),
            "the hand-off in the event log",
            "return [...document.querySelectorAll('#events li[data-type=lock_acquired][data-queued=true]')].some(li => \
               li.textContent.includes('dashboard-resource handed to client dashboard-waiter after waiting'))",
        )
        .await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the new holder, an empty queue and the open queue refreshed",
            &format!(
                "const r = {row}, d = {detail}; \
                 return r !== null && d !== null && r.cells[1].textContent === 'dashboard-waiter' \
                   && r.cells[3].textContent === '{handed_token}' && r.querySelector('td.queue').textContent === '0' \
                   && d.textContent.includes('no one is waiting')"
            ),
        )
        .await;

    // A wait that runs out: the event says why and for how long.
    let gave_up = call(
        "POST",
        &cluster.url(served_by, &format!("/sessions/{session}/locks/dashboard-resource")),
        Some(json!({"wait": 1})),
    )
    .await;
    assert_eq!(gave_up.status, 409, "{}", gave_up.text);
    browser
        .wait_for(
            Duration::from_secs(10),
            "the timed-out wait in the event log",
            "return [...document.querySelectorAll('#events li[data-type=lock_wait_ended][data-reason=timeout]')].some(li => \
               li.textContent.includes('client dashboard-client stopped waiting for dashboard-resource: timed out after'))",
        )
        .await;

    // The session that stopped sending keepalives expired: its lock is free but delayed.
    browser
        .wait_for(
            Duration::from_secs(15),
            "the expired session's lock shown as delayed",
            &format!(
                "const r = {}; \
                 return r !== null && r.classList.contains('delayed') && r.cells[1].textContent.includes('lock-delay') \
                   && r.querySelector('.delay').textContent.startsWith('delayed for')",
                lock_row("delayed-resource")
            ),
        )
        .await;

    // A semaphore: two sessions take "shared-pool" shared with a limit of 3, the second with a
    // value. The row shows the mode, the use (2/3) and both clients; the open lock each holder
    // with its value; the event log the shared grants.
    let mut pool_tokens = Vec::new();
    for (client, value) in [("pool-reader-1", None), ("pool-reader-2", Some("10.0.0.7:8080"))] {
        let s = create_session(&cluster.base(leader), client, 60).await;
        let mut body = json!({"mode": "shared", "limit": 3});
        if let Some(v) = value {
            body["value"] = json!(v);
        }
        let g = call("POST", &cluster.url(served_by, &format!("/sessions/{s}/locks/shared-pool")), Some(body)).await;
        assert_eq!(g.status, 201, "{}", g.text);
        pool_tokens.push(g.body["fence_token"].as_u64().unwrap());
    }
    let pool = lock_row("shared-pool");
    let pool_detail = lock_detail("shared-pool");
    browser
        .wait_for(
            Duration::from_secs(10),
            "the shared tag, 2/3 and both clients in the semaphore's row",
            &format!(
                "const r = {pool}; if (r === null) return false; const c = r.cells[1]; \
                 return c.querySelector('.tag.shared')?.textContent === 'shared' && c.querySelector('.use')?.textContent === '2/3' \
                   && c.textContent.includes('pool-reader-1, pool-reader-2') && r.cells[2].textContent === '2 sessions' \
                   && r.cells[3].textContent === '{}, {}'",
                pool_tokens[0], pool_tokens[1]
            ),
        )
        .await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the shared grants in the event log, one with its value",
            &format!(
                "const l = [...document.querySelectorAll('#events li[data-type=lock_acquired][data-mode=shared]')].map(li => li.textContent); \
                 return l.some(t => t.includes('client pool-reader-1 took shared-pool shared (fence token {})')) \
                   && l.some(t => t.includes('client pool-reader-2 took shared-pool shared (fence token {}, value 10.0.0.7:8080)'))",
                pool_tokens[0], pool_tokens[1]
            ),
        )
        .await;

    // Behind the readers, a writer waits, and behind it a reader (readers never jump a writer):
    // the queue shows each waiter's mode, and the reader's limit.
    let writer = create_session(&cluster.base(leader), "pool-writer", 60).await;
    let writer_url = cluster.url(served_by, &format!("/sessions/{writer}/locks/shared-pool"));
    let _writer_wait = tokio::spawn(async move { call("POST", &writer_url, Some(json!({"wait": 60}))).await });
    browser
        .wait_for(
            Duration::from_secs(10),
            "the writer in the semaphore's queue",
            &format!("const r = {pool}; return r !== null && r.querySelector('td.queue').textContent === '1'"),
        )
        .await;
    let reader = create_session(&cluster.base(leader), "pool-reader-3", 60).await;
    let reader_url = cluster.url(served_by, &format!("/sessions/{reader}/locks/shared-pool"));
    let _reader_wait = tokio::spawn(async move {
        call("POST", &reader_url, Some(json!({"wait": 60, "mode": "shared", "limit": 3}))).await
    });
    browser.eval(&format!("{pool}.click(); return true")).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "each holder with its value, and each waiter with its mode, in the open semaphore",
            &format!(
                "const d = {pool_detail}; if (d === null) return false; \
                 const h = [...d.querySelectorAll('table.holders tbody tr')]; \
                 const w = [...d.querySelectorAll('table.waiters tbody tr')]; \
                 return d.querySelector('.lock-head').textContent === 'held shared by 2 sessions (a semaphore: 2/3 in use)' \
                   && h.length === 2 && h[0].cells[1].textContent === 'pool-reader-1' && h[0].cells[5].textContent === '–' \
                   && h[1].cells[1].textContent === 'pool-reader-2' && h[1].cells[3].textContent === '{}' \
                   && h[1].cells[5].textContent === '10.0.0.7:8080' \
                   && w.length === 2 && w[0].dataset.session === '{writer}' && w[0].cells[3].textContent === 'exclusive' \
                   && w[1].dataset.session === '{reader}' && w[1].cells[3].textContent === 'shared, limit 3'",
                pool_tokens[1]
            ),
        )
        .await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the shared wait in the event log",
            "return [...document.querySelectorAll('#events li[data-type=lock_waiting]')].some(li => \
               li.textContent.includes('client pool-reader-3 waits for shared-pool shared (limit 3, place 2, until'))",
        )
        .await;

    // An election: the leader's address (its value) shows in the row and in the open lock.
    let candidate = create_session(&cluster.base(leader), "candidate-a", 60).await;
    let elected = call(
        "POST",
        &cluster.url(served_by, &format!("/sessions/{candidate}/locks/election")),
        Some(json!({"value": "10.0.0.9:9000"})),
    )
    .await;
    assert_eq!(elected.status, 201, "{}", elected.text);
    let election = lock_row("election");
    browser
        .wait_for(
            Duration::from_secs(10),
            "the leader's address in the election's row",
            &format!(
                "const r = {election}; return r !== null && r.cells[1].textContent === 'candidate-a 10.0.0.9:9000' \
                   && r.cells[1].querySelector('.value')?.textContent === '10.0.0.9:9000'"
            ),
        )
        .await;
    browser.eval(&format!("{election}.click(); return true")).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the leader's address in the open election",
            &format!(
                "const d = {}; return d !== null && d.querySelector('.lock-head').textContent.startsWith('held by client candidate-a') \
                   && d.querySelector('.lock-head').textContent.endsWith(', value 10.0.0.9:9000')",
                lock_detail("election")
            ),
        )
        .await;

    // The events' filter box keeps the events about resources with that prefix: typed in, an
    // event about another resource goes and one about a matching resource stays; emptied, all
    // come back (the failover below needs the node events, which a filtered stream leaves out).
    let events_filter = |prefix: &str| {
        format!(
            "const f = document.getElementById('events-filter'); f.value = '{prefix}'; \
             f.dispatchEvent(new Event('input')); return true"
        )
    };
    let mentions = |text: &str| {
        format!("[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('{text}'))")
    };
    browser
        .wait_for(
            Duration::from_secs(5),
            "events about both resources before filtering",
            &format!("return {} && {}", mentions("dashboard-resource"), mentions("took shared-pool shared")),
        )
        .await;
    browser.eval(&events_filter("shared-")).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "only the events about shared-* with the prefix typed in",
            &format!(
                "const lis = [...document.querySelectorAll('#events li')]; \
                 return lis.length > 0 && lis.every(li => li.textContent.includes('shared-pool')) \
                   && !{} && {}",
                mentions("dashboard-resource"),
                mentions("client pool-reader-2 took shared-pool shared")
            ),
        )
        .await;
    browser.eval(&events_filter("")).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "every event back with the filter emptied",
            &format!(
                "return {} && {} && document.querySelectorAll('#events li[data-type=leader_changed]').length >= 1",
                mentions("dashboard-resource"),
                mentions("took shared-pool shared")
            ),
        )
        .await;

    // The filter box narrows the tables.
    browser.eval("const f = document.getElementById('filter'); f.value = 'no-such-thing'; f.dispatchEvent(new Event('input')); return true").await;
    browser
        .wait_for(
            Duration::from_secs(5),
            "the filter empties the locks table",
            "return document.querySelectorAll('#locks tbody tr').length === 0",
        )
        .await;
    browser.eval("const f = document.getElementById('filter'); f.value = 'dashboard'; f.dispatchEvent(new Event('input')); return true").await;
    browser
        .wait_for(
            Duration::from_secs(5),
            "the filter finds the lock",
            "return document.querySelectorAll('#locks tbody tr.lock').length === 1",
        )
        .await;

    // Kill the leader: the page, without a reload, shows the new leader and the dead node.
    let killed_at = Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.wait_for_leader().await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the new leader and the dead node on the page",
            &format!(
                "const l = document.querySelectorAll('#members .member.leader'); \
                 const dead = document.querySelector('#members .member[data-node=\"{leader}\"]'); \
                 return l.length === 1 && l[0].dataset.node === '{new_leader}' && dead !== null && dead.classList.contains('down')"
            ),
        )
        .await;
    let shown_after = killed_at.elapsed();
    eprintln!("dashboard showed the failover {shown_after:?} after the kill");
    assert!(shown_after < Duration::from_secs(5), "took {shown_after:?}");
    browser
        .wait_for(
            Duration::from_secs(5),
            "the leader change in the event log",
            "return document.querySelectorAll('#events li[data-type=leader_changed]').length >= 2",
        )
        .await;

    // Readable at phone width: nothing wider than the screen.
    browser.set_window(390, 844).await;
    browser
        .wait_for(
            Duration::from_secs(5),
            "no horizontal scrolling at phone width",
            "return document.documentElement.scrollWidth <= window.innerWidth",
        )
        .await;

    let errors: Vec<_> = browser.console().await.into_iter().filter(|(level, _)| level == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
