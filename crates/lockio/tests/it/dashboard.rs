//! The dashboard in a real headless Chromium against a real 3-node cluster: it loads without
//! JavaScript errors, shows the members and the one leader, shows a lock taken through the API
//! in its table and its event log, and follows a failover without a reload.

use std::time::{Duration, Instant};

use crate::support::browser::Browser;
use crate::support::{acquire, create_session, Cluster};

const MEMBERS: &str = "return document.querySelectorAll('#members .member').length";

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

    let session = create_session(&cluster.base(leader), "dashboard-client", 60).await;
    let grant = acquire(&cluster.base(served_by), &session, "dashboard-resource").await;
    assert_eq!(grant.status, 201);
    let token = grant.body["fence_token"].as_u64().unwrap();
    browser
        .wait_for(
            Duration::from_secs(10),
            "the lock in the locks table",
            &format!(
                "return [...document.querySelectorAll('#locks tbody tr')].some(r => \
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
        .wait_for(Duration::from_secs(10), "the session in the sessions table", "return document.querySelector('#sessions tbody').textContent.includes('dashboard-client')")
        .await;

    // The filter box narrows the tables.
    browser.eval("const f = document.getElementById('filter'); f.value = 'no-such-thing'; f.dispatchEvent(new Event('input')); return true").await;
    browser.wait_for(Duration::from_secs(5), "the filter empties the locks table", "return document.querySelectorAll('#locks tbody tr').length === 0").await;
    browser.eval("const f = document.getElementById('filter'); f.value = 'dashboard'; f.dispatchEvent(new Event('input')); return true").await;
    browser.wait_for(Duration::from_secs(5), "the filter finds the lock", "return document.querySelectorAll('#locks tbody tr').length === 1").await;

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
        .wait_for(Duration::from_secs(5), "the leader change in the event log", "return document.querySelectorAll('#events li[data-type=leader_changed]').length >= 2")
        .await;

    // Readable at phone width: nothing wider than the screen.
    browser.set_window(390, 844).await;
    browser.wait_for(Duration::from_secs(5), "no horizontal scrolling at phone width", "return document.documentElement.scrollWidth <= window.innerWidth").await;

    let errors: Vec<_> = browser.console().await.into_iter().filter(|(level, _)| level == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
