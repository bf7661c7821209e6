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
  const r = { tenants: $("#rules-tenants").value.split(",").map((t) => t.trim()).filter(Boolean),
    min_severity: $("#rules-floor").value, dedupe_window: $("#rules-dedupe").value.trim() || null,
    digest: checked($("#rules-digest")), digest_max_wait: $("#rules-digest-wait").value.trim() || null };
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
const results = {}; // Send test outcomes survive a re-render of the table
async function load() {
  endpoints = await api("GET", "/api/endpoints");
  const tb = $("#endpoints tbody"); tb.replaceChildren();
  $("#empty").hidden = endpoints.length > 0;
  for (const e of endpoints) {
    const tr = document.createElement("tr"); tr.dataset.id = e.id;
    tr.append(cell(e.name, "name"), cell(e.channel), cell(e.target, "target"), cell(e.events.join(", ") + rulesText(e.rules), "muted"));
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
    act.append(test, edit, del, out);
    if (e.warnings) for (const w of e.warnings) { const p = document.createElement("div"); p.className = "warn"; p.textContent = w; act.append(p); }
    tr.append(act); tb.append(tr);
  }
}
function fill(e) {
  $("#form-title").textContent = e ? `Edit ${e.name}` : "Add an endpoint";
  $("#edit-id").value = e ? e.id : ""; $("#name").value = e ? e.name : ""; $("#channel").value = e ? e.channel : "slack";
  $("#target").value = ""; $("#target").placeholder = e ? `${e.target} (paste again to change)` : "https://hooks.slack.com/services/…";
  $("#secret").value = ""; $("#form-error").textContent = ""; $("#form-warning").textContent = "";
  for (const c of ev.querySelectorAll("input")) c.checked = e ? e.events.includes(c.value) : false;
  fillRules(e ? e.rules : null);
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
    events: checked(ev), enabled: true, rules: rulesOf() };
  if ($("#secret").value) body.secret = $("#secret").value;
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
load();
