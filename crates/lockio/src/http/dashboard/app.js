// lock.io dashboard: everything comes from the node that served this page.
"use strict";

const REFRESH_MS = 1000;
const MAX_EVENTS = 200;
const ROWS = 100;
const MAX_OPEN = 10; // locks whose queue is shown (and fetched every refresh) at once
const SHOWN_HOLDERS = 3; // a shared lock's row names its first few holders, then "+N more"
const MAX_VALUES = 10000;

const $ = (id) => document.getElementById(id);
let lastApplied = null; // [applied_index, time] for writes/s
let refreshTimer = null;
let refreshing = false;
const seenEvents = new Set(); // the ids of the changes shown
let eventSource = null;
let lastLocks = null; // the last GET /admin/locks answer, drawn again when a lock opens or closes
const openLocks = new Map(); // resource -> its GET /admin/locks/{resource} answer (null: loading)
let statsWaiters = false; // the stats carry a waiter count (then the listing's sum is not used)
// The values of grants seen in lock_acquired events, by "resource#fence_token" (a grant's value
// never changes). The listing has the holders' values only for a lock with several holders;
// this names the value of a lock with one holder (an election's leader address) in its row.
const grantValues = new Map();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

async function getJson(path) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 4000);
  try {
    const r = await fetch(path, { signal: abort.signal, cache: "no-store" });
    return r.ok ? await r.json() : null;
  } catch (_) {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

function short(id) { return id ? id.slice(0, 8) : ""; }

function duration(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return "–";
  secs = Math.max(0, secs);
  if (secs < 60) return secs.toFixed(secs < 10 ? 1 : 0) + " s";
  if (secs < 3600) return Math.floor(secs / 60) + " m " + Math.floor(secs % 60) + " s";
  return Math.floor(secs / 3600) + " h " + Math.floor((secs % 3600) / 60) + " m";
}

// Unix seconds as the local time of day.
function clock(secs) { return new Date(secs * 1000).toLocaleTimeString(); }

function hasValue(v) { return v !== null && v !== undefined; }

function valueChip(v) { return el("span", { class: "value mono", title: "the value stored with the grant" }, v); }

// A row's holders, oldest first: the listing has them all for a lock with several holders, and
// the top-level fields for one.
function rowHolders(k) {
  if (k.holders && k.holders.length) return k.holders;
  const value = "value" in k ? k.value : grantValues.get(`${k.resource}#${k.fence_token}`);
  return [{ session_id: k.session_id, client_id: k.client_id, fence_token: k.fence_token, acquired_at: k.acquired_at, value }];
}

// A shared lock's mode and use: "shared 2/3" for a semaphore, "shared · 4 holders" otherwise.
function sharedUse(count, limit) {
  const use = hasValue(limit)
    ? el("span", { class: "use" + (count >= limit ? " full" : ""), title: `${count} of at most ${limit} holders (a semaphore)` }, `${count}/${limit}`)
    : el("span", { class: "use", title: `${count} shared holder${count === 1 ? "" : "s"}` }, `${count} holder${count === 1 ? "" : "s"}`);
  return [el("span", { class: "tag shared", title: "shared: held by several sessions together" }, "shared"), " ", use];
}

function firstFew(items, total) {
  const shown = items.slice(0, SHOWN_HOLDERS).join(", ");
  return total > SHOWN_HOLDERS ? `${shown} +${total - SHOWN_HOLDERS} more` : shown;
}

function renderCluster(s) {
  const me = s.members.find((m) => m.id === s.node_id);
  $("me").textContent = `node ${s.node_id} (${me && me.http ? me.http : s.node}) · ${s.state} · term ${s.term} · ` +
    `${s.is_ready ? "healthy" : "degraded"} · leader: ${s.leader_id === null ? "none" : "node " + s.leader_id}`;
  const up = s.members.filter((m) => m.reachable).length;
  $("cluster-summary").textContent = `${up} of ${s.members.length} reachable · commit ${s.commit_index} · applied ${s.applied_index}`;
  const cards = s.members.map((m) => {
    const isLeader = m.reachable && m.id === s.leader_id;
    const role = m.reachable ? (m.state || "?") : "UNREACHABLE";
    const link = m.http ? el("a", { href: `http://${m.http}/` }, m.http) : "unknown";
    const rows = [
      ["http", link],
      ["raft", m.raft],
      ["term", m.term ?? "–"],
      ["commit / applied", m.commit_index === undefined ? "–" : `${m.commit_index} / ${m.applied_index}`],
      ["lag", m.lag ?? "–"],
      ["last contact", m.id === s.node_id ? "this node" : (m.last_contact_ms === null ? "never" : `${(m.last_contact_ms / 1000).toFixed(1)} s ago`)],
    ];
    const dl = el("dl");
    for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v));
    return el("div", { class: "member" + (isLeader ? " leader" : "") + (m.reachable ? "" : " down"), "data-node": m.id },
      el("div", { class: "top" }, el("span", { class: "name" }, `node ${m.id}${m.id === s.node_id ? " (this)" : ""}`),
        el("span", { class: "role" }, role)),
      dl);
  });
  $("members").replaceChildren(...cards);

  const st = s.stats;
  $("stat-active").textContent = st.active_sessions;
  $("stat-expired").textContent = st.expired_sessions;
  $("stat-locks").textContent = st.total_locks;
  $("stat-fence").textContent = st.fence_counter;
  statsWaiters = typeof st.waiters === "number";
  if (statsWaiters) showWaiters(String(st.waiters), "waiting for a lock", "");
  const now = performance.now();
  if (lastApplied) {
    const rate = (s.applied_index - lastApplied[0]) / ((now - lastApplied[1]) / 1000);
    $("stat-ops").textContent = rate >= 0 ? rate.toFixed(rate < 10 ? 1 : 0) : "–";
  }
  lastApplied = [s.applied_index, now];
}

function showWaiters(n, label, title) {
  $("stat-waiters").textContent = n;
  $("stat-waiters-label").textContent = label;
  $("tile-waiters").title = title;
  $("tile-waiters").classList.toggle("busy", n !== "0");
}

function renderLocks(l) {
  lastLocks = l;
  const now = Date.now() / 1000;
  const listed = new Set(l.locks.map((k) => k.resource));
  for (const r of [...openLocks.keys()]) if (!listed.has(r)) openLocks.delete(r);
  const rows = [];
  for (const k of l.locks) {
    const open = openLocks.has(k.resource);
    const delayed = !k.locked;
    const queue = k.queue_length || 0;
    const toggle = el("button", { class: "disclosure", type: "button", "aria-expanded": String(open),
      "aria-label": `queue of ${k.resource}`, title: open ? "hide the queue" : "show the queue" }, open ? "▾" : "▸");
    const cells = delayed ? [
      el("td", {}, el("span", { class: "tag delayed" }, "lock-delay"), " ",
        el("span", { class: "delay nowrap" }, k.delayed_until && k.delayed_until > now ? `delayed for ${duration(k.delayed_until - now)}` : "delay ending")),
      el("td", { class: "mono id muted" }, "–"),
      el("td", { class: "num muted" }, "–"),
      el("td", { class: "num muted" }, "–"),
    ] : holderCells(k, now);
    const attrs = { class: "lock" + (delayed ? " delayed" : "") + (open ? " open" : ""), "data-resource": k.resource };
    if (delayed && k.delayed_until) {
      attrs.title = `free, but its holder's session expired: no one gets it before ${clock(k.delayed_until)} (lock-delay)`;
    }
    rows.push(el("tr", attrs,
      el("td", { class: "mono res" }, toggle, el("span", { class: "name", title: k.resource }, k.resource)),
      ...cells,
      el("td", { class: "num queue" + (queue ? " waiting" : "") }, queue)));
    if (open) rows.push(lockDetail(k, openLocks.get(k.resource), now));
  }
  $("locks").tBodies[0].replaceChildren(...rows);
  $("locks-count").textContent = countText(l.locks.length, l.matched, l.total);

  if (!statsWaiters) {
    const sum = l.locks.reduce((n, k) => n + (k.queue_length || 0), 0);
    const whole = l.locks.length === l.total;
    showWaiters(whole ? String(sum) : `≥ ${sum}`, "waiting for a lock",
      whole ? "the sum of the queues of all locks" : `the sum of the queues of the ${l.locks.length} locks listed below`);
  }
}

// A held lock's holder, session, token and held-for cells. A shared lock shows its mode, its
// use and its first few holders; a lone holder's value shows beside its client.
function holderCells(k, now) {
  const holders = rowHolders(k);
  const count = k.holders_count || holders.length;
  if (k.mode !== "shared") {
    const h = holders[0];
    return [
      el("td", { class: "holder" }, h.client_id, hasValue(h.value) ? " " : null, hasValue(h.value) ? valueChip(h.value) : null),
      el("td", { class: "mono id", title: h.session_id }, short(h.session_id)),
      el("td", { class: "num" }, h.fence_token),
      el("td", { class: "num" }, duration(now - h.acquired_at)),
    ];
  }
  const clients = firstFew(holders.map((h) => h.client_id), count);
  const lone = count === 1 && hasValue(holders[0].value);
  const tokens = holders.map((h) => h.fence_token);
  return [
    el("td", { class: "holder" }, ...sharedUse(count, k.limit), " ",
      el("div", { class: "clients", title: holders.map((h) => h.client_id).join(", ") }, clients),
      lone ? " " : null, lone ? valueChip(holders[0].value) : null),
    count === 1
      ? el("td", { class: "mono id", title: holders[0].session_id }, short(holders[0].session_id))
      : el("td", { class: "id muted", title: holders.map((h) => h.session_id).join("\n") }, `${count} sessions`),
    el("td", { class: "num", title: "fence tokens: " + tokens.join(", ") },
      tokens.length > 2 ? `${Math.min(...tokens)}–${Math.max(...tokens)}` : tokens.join(", ")),
    el("td", { class: "num", title: count > 1 ? "the oldest holder's" : "" }, duration(now - k.acquired_at)),
  ];
}

// A waiter's mode: "exclusive", "shared" or "shared, limit 3".
function waiterMode(w) {
  if (w.mode !== "shared") return w.mode || "exclusive";
  return el("span", { class: "mode-shared" }, hasValue(w.limit) ? `shared, limit ${w.limit}` : "shared");
}

// The row under an open lock: who holds it and its queue, in order.
function lockDetail(row, d, now) {
  const td = el("td", { colspan: 6 });
  const tr = el("tr", { class: "detail", "data-detail": row.resource }, td);
  if (!d) {
    td.append(el("span", { class: "muted" }, "loading…"));
    return tr;
  }
  const holders = d.holders || [];
  const h = holders[0];
  const shared = d.mode === "shared" && h;
  const head = shared
    ? [`held shared by ${holders.length} session${holders.length === 1 ? "" : "s"}`,
       hasValue(d.limit) ? ` (a semaphore: ${holders.length}/${d.limit} in use)` : ""]
    : h
    ? [`held by client ${h.client_id} (session `, el("span", { class: "mono", title: h.session_id }, short(h.session_id)),
       `, fence token ${h.fence_token}) for ${duration(now - h.acquired_at)}`,
       ...(hasValue(h.value) ? [", value ", valueChip(h.value)] : [])]
    : d.delayed_until
      ? [`free, under lock-delay until ${clock(d.delayed_until)}: the head of the queue gets it then`]
      : ["free"];
  td.append(el("div", { class: "lock-head" }, ...head));
  if (shared) {
    const rows = holders.map((x, i) => el("tr", { "data-session": x.session_id },
      el("td", { class: "num" }, i + 1),
      el("td", {}, x.client_id),
      el("td", { class: "mono id", title: x.session_id }, short(x.session_id)),
      el("td", { class: "num" }, x.fence_token),
      el("td", { class: "num" }, duration(now - x.acquired_at)),
      el("td", { class: "val" }, hasValue(x.value) ? valueChip(x.value) : el("span", { class: "muted" }, "–"))));
    td.append(el("table", { class: "holders" },
      el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "Holder"), el("th", {}, "Session"),
        el("th", { class: "num" }, "Token"), el("th", { class: "num" }, "Held for"), el("th", {}, "Value"))),
      el("tbody", {}, ...rows)));
  }
  const waiters = d.waiters || [];
  if (!waiters.length) {
    td.append(el("div", { class: "muted" }, "no one is waiting"));
    return tr;
  }
  const body = waiters.map((w, i) => el("tr", { "data-session": w.session_id },
    el("td", { class: "num" }, i + 1),
    el("td", {}, w.client_id),
    el("td", { class: "mono id", title: w.session_id }, short(w.session_id)),
    el("td", {}, waiterMode(w)),
    el("td", { class: "num" }, duration(now - w.since)),
    el("td", { class: "num", title: `gives up at ${clock(w.deadline)}` }, duration(w.deadline - now))));
  td.append(el("table", { class: "waiters" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "Waiting client"), el("th", {}, "Session"),
      el("th", {}, "Mode"), el("th", { class: "num" }, "Waited"), el("th", { class: "num" }, "Time left"))),
    el("tbody", {}, ...body)));
  return tr;
}

function lockPath(resource) { return `/admin/locks/${encodeURIComponent(resource)}?stale=true`; }

// Fetches the queues of the open locks; a lock that does not answer keeps what it showed.
async function loadDetails(resources) {
  const answers = await Promise.all(resources.map((r) => getJson(lockPath(r))));
  resources.forEach((r, i) => { if (answers[i] && openLocks.has(r)) openLocks.set(r, answers[i]); });
}

async function toggleLock(resource) {
  if (openLocks.has(resource)) {
    openLocks.delete(resource);
  } else {
    if (openLocks.size >= MAX_OPEN) openLocks.delete(openLocks.keys().next().value);
    openLocks.set(resource, null);
  }
  if (lastLocks) renderLocks(lastLocks);
  if (openLocks.has(resource)) {
    await loadDetails([resource]);
    if (lastLocks) renderLocks(lastLocks);
  }
}

function renderSessions(r) {
  const rows = r.sessions.map((x) => el("tr", {},
    el("td", {}, x.client_id),
    el("td", { class: "mono id", title: x.session_id }, short(x.session_id)),
    el("td", { class: "num" }, x.timeout + " s"),
    el("td", { class: "num" + (x.is_expired ? " expired" : "") }, x.is_expired ? "expired" : duration(x.expires_in)),
    el("td", { class: "mono" }, x.locks_held.length ? x.locks_held.join(", ") : (x.waiting_for && x.waiting_for.length ? "" : "–"),
      x.waiting_for && x.waiting_for.length
        ? el("span", { class: "waiting-for" }, (x.locks_held.length ? " · " : "") + "waiting for " + x.waiting_for.join(", "))
        : null)));
  $("sessions").tBodies[0].replaceChildren(...rows);
  $("sessions-count").textContent = countText(r.sessions.length, r.matched, r.total);
}

function countText(shown, matched, total) {
  const base = matched === total ? `${total}` : `${matched} matching of ${total}`;
  return shown < matched ? `(showing ${shown} of ${base})` : `(${base})`;
}

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  clearTimeout(refreshTimer);
  const filter = encodeURIComponent($("filter").value.trim());
  const q = `?stale=true&limit=${ROWS}` + (filter ? `&filter=${filter}` : "");
  const [status, locks, sessions] = await Promise.all([
    getJson("/cluster/status"), getJson("/admin/locks" + q), getJson("/admin/sessions" + q),
    loadDetails([...openLocks.keys()]),
  ]);
  try {
    if (status) renderCluster(status);
    else $("me").textContent = "this node does not answer";
    if (locks) renderLocks(locks);
    if (sessions) renderSessions(sessions);
  } finally {
    refreshing = false;
    refreshTimer = setTimeout(refresh, REFRESH_MS);
  }
}

const WAIT_ENDS = { timeout: "timed out", cancelled: "cancelled", session_ended: "its session ended" };

function describe(e) {
  const rel = (rs) => rs && rs.length ? ` (released ${rs.map((g) => `${g.resource} #${g.fence_token}`).join(", ")})` : "";
  switch (e.type) {
    case "session_created": return `client ${e.client_id} opened session ${short(e.session_id)} (timeout ${e.timeout} s` +
      (e.lock_delay ? `, lock-delay ${e.lock_delay} s)` : ")");
    case "session_deleted": return `client ${e.client_id} closed session ${short(e.session_id)}${rel(e.released)}`;
    case "session_expired": return `session ${short(e.session_id)} of client ${e.client_id} expired${rel(e.released)}`;
    case "lock_acquired": {
      const shared = e.mode === "shared";
      const value = hasValue(e.value) ? `, value ${e.value}` : "";
      if (e.queued) {
        return `${e.resource} handed to client ${e.client_id} after waiting ${duration(e.waited)} ` +
          `(${shared ? "shared, " : ""}fence token ${e.fence_token}${value})`;
      }
      return shared
        ? `client ${e.client_id} took ${e.resource} shared (fence token ${e.fence_token}${value})`
        : `client ${e.client_id} acquired ${e.resource} with fence token ${e.fence_token}${value}`;
    }
    case "lock_waiting": return `client ${e.client_id} waits for ${e.resource}` +
      (e.mode === "shared" ? ` shared (${hasValue(e.limit) ? `limit ${e.limit}, ` : ""}` : " (") +
      `place ${e.queue_length}, until ${clock(e.deadline)})`;
    case "lock_wait_ended": return `client ${e.client_id} stopped waiting for ${e.resource}: ` +
      `${WAIT_ENDS[e.reason] || e.reason} after ${duration(e.waited)}`;
    case "lock_released": return `client ${e.client_id} released ${e.resource} (fence token ${e.fence_token})`;
    case "leader_changed": return e.leader_id === null ? "no leader" : `node ${e.leader_id} is leader (term ${e.term})`;
    case "node_unreachable": return `node ${e.node_id} is unreachable`;
    case "node_reachable": return `node ${e.node_id} is reachable`;
    default: return e.type;
  }
}

function addEvent(msg) {
  let e;
  try { e = JSON.parse(msg.data); } catch (_) { return; }
  if (e.type === "progress") return;
  // The node no longer holds what this page missed: start again from its recent history.
  if (e.type === "compacted") { connectEvents(); return; }
  // A change has an id (its place in the log); leader changes and reachability do not.
  if (e.id) {
    if (seenEvents.has(e.id)) return;
    seenEvents.add(e.id);
  }
  if (e.type === "lock_acquired" && hasValue(e.value)) {
    grantValues.set(`${e.resource}#${e.fence_token}`, e.value);
    if (grantValues.size > MAX_VALUES) grantValues.delete(grantValues.keys().next().value);
  }
  const at = new Date(e.at * 1000);
  const handoff = e.type === "lock_acquired" && e.queued === true;
  const attrs = { "data-type": e.type };
  if (handoff) attrs["data-queued"] = "true";
  if (e.reason) attrs["data-reason"] = e.reason;
  if (e.mode) attrs["data-mode"] = e.mode;
  const li = el("li", attrs,
    el("time", { datetime: at.toISOString() }, at.toLocaleTimeString()),
    el("span", { class: "tag " + e.type + (e.reason ? " " + e.reason : "") }, handoff ? "lock handed off" : e.type.replace(/_/g, " ")),
    el("span", {}, describe(e)));
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  if (e.type === "leader_changed" || e.type.startsWith("node_")) refresh();
}

// The event stream, with the resource prefix typed in the events' filter box (if any). A
// browser reconnects by itself, resuming after the last id; a stream the node refused or
// closed for good is opened afresh.
function connectEvents() {
  if (eventSource) eventSource.close();
  seenEvents.clear();
  $("events").replaceChildren();
  const prefix = $("events-filter").value.trim();
  const source = new EventSource("/events" + (prefix ? `?resource=${encodeURIComponent(prefix)}` : ""));
  eventSource = source;
  source.onopen = () => { $("stream").textContent = "events: live"; $("stream").className = "pill on"; };
  source.onerror = () => {
    $("stream").textContent = "events: reconnecting";
    $("stream").className = "pill off";
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(() => { if (eventSource === source) connectEvents(); }, 1000);
    }
  };
  source.onmessage = addEvent;
}

$("locks").tBodies[0].addEventListener("click", (ev) => {
  const row = ev.target.closest("tr.lock");
  if (row && !ev.target.closest("a")) toggleLock(row.dataset.resource);
});

let eventsFilterTimer = null;
$("events-filter").addEventListener("input", () => {
  clearTimeout(eventsFilterTimer);
  eventsFilterTimer = setTimeout(connectEvents, 300);
});

let filterTimer = null;
$("filter").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(refresh, 200);
});
connectEvents();
refresh();
