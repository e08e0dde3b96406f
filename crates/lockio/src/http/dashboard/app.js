// lock.io dashboard: everything comes from the node that served this page.
"use strict";

const REFRESH_MS = 1000;
const MAX_EVENTS = 200;
const ROWS = 100;

const $ = (id) => document.getElementById(id);
let lastApplied = null; // [applied_index, time] for writes/s
let refreshTimer = null;
let refreshing = false;
const seenEvents = new Set();

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
  const now = performance.now();
  if (lastApplied) {
    const rate = (s.applied_index - lastApplied[0]) / ((now - lastApplied[1]) / 1000);
    $("stat-ops").textContent = rate >= 0 ? rate.toFixed(rate < 10 ? 1 : 0) : "–";
  }
  lastApplied = [s.applied_index, now];
}

function renderLocks(l) {
  const now = Date.now() / 1000;
  const rows = l.locks.map((k) => el("tr", {},
    el("td", { class: "mono" }, k.resource),
    el("td", {}, k.client_id),
    el("td", { class: "mono id", title: k.session_id }, short(k.session_id)),
    el("td", { class: "num" }, k.fence_token),
    el("td", { class: "num" }, duration(now - k.acquired_at))));
  $("locks").tBodies[0].replaceChildren(...rows);
  $("locks-count").textContent = countText(l.locks.length, l.matched, l.total);
}

function renderSessions(r) {
  const rows = r.sessions.map((x) => el("tr", {},
    el("td", {}, x.client_id),
    el("td", { class: "mono id", title: x.session_id }, short(x.session_id)),
    el("td", { class: "num" }, x.timeout + " s"),
    el("td", { class: "num" + (x.is_expired ? " expired" : "") }, x.is_expired ? "expired" : duration(x.expires_in)),
    el("td", { class: "mono" }, x.locks_held.length ? x.locks_held.join(", ") : "–")));
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
  ]);
  if (status) renderCluster(status);
  else $("me").textContent = "this node does not answer";
  if (locks) renderLocks(locks);
  if (sessions) renderSessions(sessions);
  refreshing = false;
  refreshTimer = setTimeout(refresh, REFRESH_MS);
}

function describe(e) {
  const rel = (rs) => rs && rs.length ? ` (released ${rs.map((g) => `${g.resource} #${g.fence_token}`).join(", ")})` : "";
  switch (e.type) {
    case "session_created": return `client ${e.client_id} opened session ${short(e.session_id)} (timeout ${e.timeout} s)`;
    case "session_deleted": return `client ${e.client_id} closed session ${short(e.session_id)}${rel(e.released)}`;
    case "session_expired": return `session ${short(e.session_id)} of client ${e.client_id} expired${rel(e.released)}`;
    case "lock_acquired": return `client ${e.client_id} acquired ${e.resource} with fence token ${e.fence_token}`;
    case "lock_released": return `client ${e.client_id} released ${e.resource} (fence token ${e.fence_token})`;
    case "leader_changed": return e.leader_id === null ? "no leader" : `node ${e.leader_id} is leader (term ${e.term})`;
    case "node_unreachable": return `node ${e.node_id} is unreachable`;
    case "node_reachable": return `node ${e.node_id} is reachable`;
    default: return e.type;
  }
}

function addEvent(msg) {
  if (seenEvents.has(msg.lastEventId)) return;
  seenEvents.add(msg.lastEventId);
  let e;
  try { e = JSON.parse(msg.data); } catch (_) { return; }
  const at = new Date(e.at * 1000);
  const li = el("li", { "data-type": e.type },
    el("time", { datetime: at.toISOString() }, at.toLocaleTimeString()),
    el("span", { class: "tag " + e.type }, e.type.replace("_", " ")),
    el("span", {}, describe(e)));
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  if (e.type === "leader_changed" || e.type.startsWith("node_")) refresh();
}

function connectEvents() {
  const source = new EventSource("/events");
  source.onopen = () => { $("stream").textContent = "events: live"; $("stream").className = "pill on"; };
  source.onerror = () => { $("stream").textContent = "events: reconnecting"; $("stream").className = "pill off"; };
  source.onmessage = addEvent;
}

let filterTimer = null;
$("filter").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(refresh, 200);
});
connectEvents();
refresh();
