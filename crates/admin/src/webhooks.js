// The Settings → Webhooks page over the JSON API.
const KINDS = ["scan.completed","scan.failed","finding.new","finding.severity_changed","compliance.report_ready","endpoint.health_changed"];
const $ = (s, el = document) => el.querySelector(s);
const ev = $("#events");
function boxes(el, name, values) { for (const k of values) { const l = document.createElement("label"); l.innerHTML = `<input type="checkbox" name="${name}" value="${k}"> `; l.append(k); el.append(l); } }
boxes(ev, "events", KINDS);
const SEVERITIES = ["critical","high","medium","low","info"], DAYS = ["mon","tue","wed","thu","fri","sat","sun"];
boxes($("#rules-digest"), "digest", SEVERITIES); boxes($("#rules-quiet-days"), "days", DAYS);
const checked = (el) => [...el.querySelectorAll("input:checked")].map((c) => c.value);
// The rules as the API takes them (the server validates; its 422 names the field).
function rulesOf() {
  const sev = checked($("#rules-digest"));
  const r = { tenants: $("#rules-tenants").value.split(",").map((t) => t.trim()).filter(Boolean),
    min_severity: $("#rules-floor").value, dedupe_window: $("#rules-dedupe").value.trim() || null,
    digest: sev.length ? { severities: sev, max_wait: $("#rules-digest-wait").value.trim() || null } : null };
  const tz = $("#rules-quiet-tz").value.trim();
  if (tz) r.quiet_hours = { time_zone: tz, from: $("#rules-quiet-from").value, to: $("#rules-quiet-to").value,
    days: checked($("#rules-quiet-days")), at_once: $("#rules-quiet-at-once").value };
  return r;
}
function fillRules(r) {
  r = r || {}; const q = r.quiet_hours || {}, d = r.digest || {};
  $("#rules-tenants").value = (r.tenants || []).join(", "); $("#rules-floor").value = r.min_severity || "info";
  $("#rules-dedupe").value = r.dedupe_window || ""; $("#rules-digest-wait").value = d.max_wait || "";
  for (const c of $("#rules-digest").querySelectorAll("input")) c.checked = (d.severities || []).includes(c.value);
  $("#rules-quiet-tz").value = q.time_zone || ""; $("#rules-quiet-from").value = q.from || ""; $("#rules-quiet-to").value = q.to || "";
  for (const c of $("#rules-quiet-days").querySelectorAll("input")) c.checked = (q.days || []).length < 7 && (q.days || []).includes(c.value);
  $("#rules-quiet-at-once").value = q.at_once || "critical";
  $("#rules").open = Object.keys(r).length > 0;
}
// One line per endpoint in the table: what its rules do, in short.
function rulesText(r) {
  if (!r) return "";
  const p = [];
  if (r.tenants) p.push(`tenants ${r.tenants.join(", ")}`);
  if (r.min_severity) p.push(`${r.min_severity}+`);
  if (r.dedupe_window) p.push(`dedupe ${r.dedupe_window}`);
  if (r.digest) p.push(`digest ${r.digest.severities.join(",")}`);
  if (r.quiet_hours) p.push(`quiet ${r.quiet_hours.from}-${r.quiet_hours.to} ${r.quiet_hours.time_zone}`);
  return p.length ? " · " + p.join(" · ") : "";
}
// Every state change is same-origin JSON (`{}` when there is nothing to say): the server refuses
// anything else, so another site's form cannot ride on the session cookie.
async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") { opts.headers["content-type"] = "application/json"; opts.body = JSON.stringify(body || {}); }
  const r = await fetch(path, opts);
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const text = await r.text(); const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw Object.assign(new Error((data && (data.field ? data.field + ": " : "") + data.reason) || r.statusText), { data });
  return data;
}
function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }
let endpoints = [];
let current = null; // the endpoint whose deliveries and health are shown
const results = {}; // Send test outcomes survive a re-render of the table
async function load() {
  endpoints = await api("GET", "/api/endpoints");
  const tb = $("#endpoints tbody"); tb.replaceChildren();
  $("#empty").hidden = endpoints.length > 0;
  for (const e of endpoints) {
    const tr = document.createElement("tr"); tr.dataset.id = e.id;
    tr.append(cell(e.name, "name"), cell(e.channel + (e.rate_limit ? ` · ${e.rate_limit}` : ""), "channel"), cell(e.target, "target"), cell(e.events.join(", ") + rulesText(e.rules), "muted"));
    const on = document.createElement("td"); const t = document.createElement("input"); t.type = "checkbox"; t.className = "toggle"; t.checked = e.enabled;
    t.addEventListener("change", async () => { await api("POST", `/api/endpoints/${e.id}/${t.checked ? "enable" : "disable"}`); await load(); });
    on.append(t); tr.append(on);
    const act = document.createElement("td");
    const test = document.createElement("button"); test.textContent = "Send test"; test.className = "test";
    const out = document.createElement("div"); out.className = "test-result";
    if (results[e.id]) { out.className = results[e.id].cls; out.textContent = results[e.id].text; }
    test.addEventListener("click", async () => {
      out.className = "test-result muted"; out.textContent = "sending…";
      try {
        const r = await api("POST", `/api/endpoints/${e.id}/test`);
        out.className = "test-result " + (r.delivered ? "ok" : "fail");
        out.textContent = (r.delivered ? "Delivered" : "Failed") + (r.status ? ` · ${r.status}` : "") + ` · ${r.latency_ms} ms` + (r.error ? ` · ${r.error}` : "");
      } catch (err) { out.className = "test-result fail"; out.textContent = err.message; }
      results[e.id] = { cls: out.className, text: out.textContent };
    });
    const edit = document.createElement("button"); edit.textContent = "Edit"; edit.className = "edit"; edit.addEventListener("click", () => fill(e));
    const del = document.createElement("button"); del.textContent = "Delete"; del.className = "delete";
    del.addEventListener("click", async () => { if (confirm(`Delete ${e.name}? Its pending deliveries go to the dead-letter queue.`)) { await api("DELETE", `/api/endpoints/${e.id}`); await load(); } });
    const details = document.createElement("button"); details.textContent = "Deliveries & health"; details.className = "details";
    details.addEventListener("click", () => showDetails(e));
    act.append(test, edit, del, details, out);
    if (e.warnings) for (const w of e.warnings) { const p = document.createElement("div"); p.className = "warn"; p.textContent = w; act.append(p); }
    tr.append(act); tb.append(tr);
  }
  const sel = $("#dlq-endpoint"); const keep = sel.value;
  sel.replaceChildren(new Option("All endpoints", ""), ...endpoints.map((e) => new Option(`${e.name} (${e.id})`, e.id)));
  sel.value = keep;
  if (current && !endpoints.some((e) => e.id === current.id)) { current = null; $("#endpoint-details").hidden = true; }
}
function fill(e) {
  $("#form-title").textContent = e ? `Edit ${e.name}` : "Add an endpoint";
  $("#edit-id").value = e ? e.id : ""; $("#name").value = e ? e.name : ""; $("#channel").value = e ? e.channel : "slack";
  $("#target").value = ""; $("#target").placeholder = e ? `${e.target} (paste again to change)` : "https://hooks.slack.com/services/…";
  $("#secret").value = ""; $("#form-error").textContent = ""; $("#form-warning").textContent = "";
  // Only an edit has a current secret to keep.
  $("#secret-label").textContent = e ? "Signing secret (webhook channel, optional; leave empty to keep the current one)" : "Signing secret (webhook channel, optional)";
  for (const c of ev.querySelectorAll("input")) c.checked = e ? e.events.includes(c.value) : false;
  $("#ed25519").checked = !!(e && e.public_key);
  const pk = keyText(e); $("#public-key").textContent = pk; $("#public-key").hidden = !pk;
  $("#rate-limit").value = e && e.rate_limit ? e.rate_limit : "";
  fillRules(e ? e.rules : null);
}
// An endpoint's rate limit as the page says it, with the deliveries that wait their turn.
function rateText(e, waiting) {
  if (e.rate_limit) return `${e.rate_limit} · ${waiting} waiting their turn`;
  return e.channel === "slack" ? "Slack's pace (NOTIFY_SLACK_PACE, 1/s by default)" : "none";
}
// The Ed25519 public key receivers verify with (the private key is never sent to the page).
function keyText(e) {
  if (!e || !e.public_key) return "";
  return `Public key: ${e.public_key}` + (e.previous_public_key ? ` · previous ${e.previous_public_key}, signing until ${e.previous_public_key_until}` : "");
}
$("#logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json" }, body: "{}" });
  location.href = "/login";
});
$("#cancel").addEventListener("click", () => fill(null));
$("#endpoint-form").addEventListener("submit", async (evt) => {
  evt.preventDefault();
  const id = $("#edit-id").value;
  const body = { name: $("#name").value, channel: $("#channel").value, target: $("#target").value,
    events: checked(ev), enabled: true, rules: rulesOf(), rate_limit: $("#rate-limit").value.trim() };
  if ($("#secret").value) body.secret = $("#secret").value;
  // Ticked: a new endpoint gets a key, an edited one keeps its key (or gets one); unticked on an
  // edit: removed.
  if ($("#ed25519").checked) body.ed25519 = true; else if (id) body.ed25519 = false;
  try {
    let saved;
    if (id) { const cur = endpoints.find((e) => e.id === id); body.enabled = cur ? cur.enabled : true;
      if (!body.target) throw new Error("target: paste the URL or address again to save changes");
      saved = await api("PUT", `/api/endpoints/${id}`, body); }
    else saved = await api("POST", "/api/endpoints", body);
    fill(null); if (saved.warnings) $("#form-warning").textContent = saved.warnings.join(" ");
    await load();
  } catch (err) { $("#form-error").textContent = err.message; }
});

// Endpoint details: health and Recent Deliveries, with Redeliver.
function el(tag, text, cls) { const x = document.createElement(tag); if (text !== undefined && text !== null) x.textContent = text; if (cls) x.className = cls; return x; }
async function showDetails(e) {
  current = e; $("#endpoint-details").hidden = false; $("#details-title").textContent = `${e.name} · ${e.id}`;
  const pk = keyText(e); $("#details-public-key").textContent = pk; $("#details-public-key").hidden = !pk;
  await Promise.all([loadHealth(), loadDeliveries()]);
  $("#endpoint-details").scrollIntoView();
}
async function loadHealth() {
  if (!current) return;
  const h = await api("GET", `/api/endpoints/${current.id}/health`);
  const rate = h.success_rate_24h == null ? "no attempts in 24 h" : `${Math.round(h.success_rate_24h * 1000) / 10} % (${h.delivered_24h} of ${h.attempts_24h})`;
  const rows = [["Success rate, 24 h", rate, "health-rate"], ["Last error", h.last_error ? `${h.last_error}${h.last_error_at ? " · " + h.last_error_at : ""}` : "none", "health-error"],
    ["In flight", String(h.in_flight), "health-in-flight"], ["Waiting", String(h.waiting), "health-waiting"],
    ["Rate limit", rateText(current, h.waiting), "health-rate-limit"],
    ["Circuit breaker", h.breaker.state + (h.breaker.consecutive_failures ? ` · ${h.breaker.consecutive_failures} failures in a row` : ""), "health-breaker"],
    ["Parked", String(h.breaker.parked), "health-parked"]];
  $("#health").replaceChildren(...rows.flatMap(([k, v, id]) => { const dd = el("dd", v); dd.id = id; return [el("dt", k), dd]; }));
}
async function loadDeliveries() {
  if (!current) return;
  const id = current.id;
  const list = await api("GET", `/api/endpoints/${id}/deliveries?limit=50`);
  const tb = $("#deliveries tbody"); tb.replaceChildren(); $("#deliveries-empty").hidden = list.length > 0;
  for (const d of list) {
    const tr = document.createElement("tr"); tr.dataset.delivery = d.delivery_id;
    tr.append(cell(d.at), cell(d.event_kind), cell(d.delivery_id, "mono"), cell(String(d.attempt)), cell(d.result, "result " + (d.result === "delivered" ? "ok" : d.result === "test" ? "muted" : "fail")),
      cell(d.status == null ? "-" : String(d.status)), cell(`${d.duration_ms} ms`));
    const act = document.createElement("td");
    const more = el("details"); more.append(el("summary", "Request / response"));
    more.append(el("div", "Request headers", "muted"), el("pre", d.request_headers.length ? d.request_headers.map(([k, v]) => `${k}: ${v}`).join("\n") : "(none recorded)", "request-headers"));
    more.append(el("div", "Response body" + (d.response_truncated ? " (first KiB)" : ""), "muted"), el("pre", d.response_body || "(none)", "response-body"));
    if (d.error) more.append(el("div", "Error", "muted"), el("pre", d.error, "error"));
    act.append(more);
    if (d.event && d.result !== "test") {
      const b = el("button", "Redeliver", "redeliver"); const out = el("div", "", "redeliver-result");
      b.addEventListener("click", async () => {
        out.className = "redeliver-result muted"; out.textContent = "queueing…";
        try { const r = await api("POST", `/api/endpoints/${id}/deliveries/${d.delivery_id}/redeliver`); out.className = "redeliver-result ok"; out.textContent = `Redelivery queued · ${r.delivery_id}`; }
        catch (err) { out.className = "redeliver-result fail"; out.textContent = err.message; }
      });
      act.append(b, out);
    } else if (d.event_omitted) act.append(el("div", "event too large to keep: cannot redeliver", "muted"));
    tr.append(act); tb.append(tr);
  }
}
$("#deliveries-refresh").addEventListener("click", () => Promise.all([loadHealth(), loadDeliveries()]));

// Dead letters: list (newest first, paged), show, replay one or all matching, purge.
const PAGE = 20; let dlqOffset = 0;
function dlqQuery() {
  const q = new URLSearchParams(); const ep = $("#dlq-endpoint").value; const since = $("#dlq-since").value.trim();
  if (ep) q.set("endpoint_id", ep); if (since) q.set("since", since); return q;
}
function dlqMessage(text, cls) { const m = $("#dlq-message"); m.className = cls || "muted"; m.textContent = text; }
// Each load is numbered: only the newest one's answer is shown (an older answer arriving late,
// say the unfiltered list after a filter was picked, must not replace it).
let deadLoads = 0;
async function loadDead() {
  const seq = ++deadLoads;
  const q = dlqQuery(); q.set("offset", dlqOffset); q.set("limit", PAGE);
  let list;
  try { list = await api("GET", `/api/dlq?${q}`); } catch (err) { if (seq === deadLoads) dlqMessage(err.message, "fail"); return; }
  if (seq !== deadLoads) return;
  const tb = $("#dlq tbody"); tb.replaceChildren(); $("#dlq-empty").hidden = list.length > 0;
  $("#dlq-page").textContent = list.length ? ` ${dlqOffset + 1}–${dlqOffset + list.length} ` : " ";
  $("#dlq-newer").disabled = dlqOffset === 0; $("#dlq-older").disabled = list.length < PAGE;
  for (const d of list) {
    const tr = document.createElement("tr"); tr.dataset.id = d.id;
    tr.append(cell(d.id, "mono"), cell(d.failed_at), cell(d.event_kind || "-"), cell(d.endpoint_id || "-", "mono"), cell(String(d.attempt_count)),
      cell(d.last_status == null ? "-" : String(d.last_status)), cell(d.reason, "reason"));
    const act = document.createElement("td");
    const show = el("button", "Show", "dlq-show"); show.addEventListener("click", () => showDead(d.id));
    const replay = el("button", "Replay", "dlq-replay"); replay.disabled = !d.replayable;
    replay.addEventListener("click", async () => {
      try { await api("POST", `/api/dlq/${d.id}/replay`); dlqMessage(`Replayed ${d.id}`, "ok"); } catch (err) { dlqMessage(err.message, "fail"); }
      await loadDead();
    });
    const purge = el("button", "Purge", "dlq-purge");
    purge.addEventListener("click", async () => {
      if (!confirm(`Purge dead letter ${d.id}? It cannot be replayed afterwards.`)) return;
      try { await api("DELETE", `/api/dlq/${d.id}`); dlqMessage(`Purged ${d.id}`, "ok"); } catch (err) { dlqMessage(err.message, "fail"); }
      await loadDead();
    });
    act.append(show, replay, purge); tr.append(act); tb.append(tr);
  }
}
async function showDead(id) {
  const box = $("#dlq-detail"); box.hidden = false;
  let d;
  try { d = await api("GET", `/api/dlq/${id}`); } catch (err) { box.replaceChildren(el("p", err.message, "fail")); return; }
  const attempts = el("table"); attempts.id = "dlq-attempts";
  attempts.append(...d.attempts.map((a) => { const tr = document.createElement("tr"); tr.append(cell(`#${a.attempt}`), cell(a.at), cell(`${a.duration_ms} ms`), cell(a.status == null ? "-" : String(a.status)), cell(a.error || "")); return tr; }));
  let job = d.job; try { job = JSON.stringify(JSON.parse(d.job), null, 2); } catch (_) { /* a poison job, or cut: shown as it is */ }
  box.replaceChildren(el("h3", `Dead letter ${d.id}`), el("p", `Reason: ${d.reason}`, "dlq-reason"), el("p", `Failed at ${d.failed_at} · event ${d.event_kind || "-"} ${d.event_id || ""} · endpoint ${d.endpoint_id || "-"}`, "muted"),
    el("h3", `Attempts (${d.attempts.length})`), attempts, el("h3", d.job_truncated ? `Job with its event (first ${d.job.length} of ${d.job_bytes} bytes)` : "Job with its event"), el("pre", job, "dlq-job"));
}
$("#dlq-refresh").addEventListener("click", () => { dlqOffset = 0; loadDead(); });
$("#dlq-newer").addEventListener("click", () => { dlqOffset = Math.max(0, dlqOffset - PAGE); loadDead(); });
$("#dlq-older").addEventListener("click", () => { dlqOffset += PAGE; loadDead(); });
$("#dlq-replay-all").addEventListener("click", async () => {
  const body = {}; const ep = $("#dlq-endpoint").value; const since = $("#dlq-since").value.trim();
  if (ep) body.endpoint_id = ep; if (since) body.since = since;
  try { const r = await api("POST", "/api/dlq/replay", body); dlqMessage(`Replayed ${r.replayed}` + (r.not_replayable ? `; ${r.not_replayable} could not be replayed` : ""), "ok"); }
  catch (err) { dlqMessage(err.message, "fail"); }
  dlqOffset = 0; await loadDead();
});
$("#dlq-purge-all").addEventListener("click", async () => {
  if (!confirm("Purge every dead letter? They cannot be replayed afterwards.")) return;
  try { const r = await api("DELETE", "/api/dlq"); dlqMessage(`Purged ${r.purged}`, "ok"); } catch (err) { dlqMessage(err.message, "fail"); }
  dlqOffset = 0; $("#dlq-detail").hidden = true; await loadDead();
});
load().then(loadDead);
