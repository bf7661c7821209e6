// The Silences section of the Settings page, over the JSON API (`api`, `cell`, `el` and `$` come
// from webhooks.js, loaded first). The server validates; its 422 names the field.
async function loadSilences() {
  const list = await api("GET", "/api/silences");
  const tb = $("#silence-list tbody"); tb.replaceChildren();
  $("#silences-empty").hidden = list.length > 0;
  for (const s of list) {
    const tr = document.createElement("tr"); tr.dataset.id = s.id; tr.className = `silence ${s.state}`;
    tr.append(cell(s.id, "mono"), cell(s.state, "state"), cell(s.matchers.length ? s.matchers.join(" ") : "every event (but scan.failed)", "matchers"),
      cell(s.endpoint_id || "all"), cell(s.starts_at), cell(s.ends_at + (s.expired_by ? ` (expired by ${s.expired_by})` : "")),
      cell(s.created_by), cell(s.comment), cell(String(s.silenced), "silenced"), cell(s.recent_events.join(" "), "mono recent"));
    const act = document.createElement("td");
    if (s.state !== "expired") {
      const b = el("button", "Expire", "silence-expire");
      b.addEventListener("click", async () => {
        try { await api("POST", `/api/silences/${s.id}/expire`, { by: $("#silence-who").value }); silenceMessage(`Expired ${s.id}`); }
        catch (err) { $("#silence-error").textContent = err.message; }
        await loadSilences();
      });
      act.append(b);
    }
    tr.append(act); tb.append(tr);
  }
  const audit = await api("GET", "/api/silences/audit");
  const ab = $("#silence-audit tbody"); ab.replaceChildren();
  for (const a of audit) {
    const tr = document.createElement("tr"); tr.className = "audit";
    tr.append(cell(a.at), cell(a.who, "who"), cell(a.action, "action"), cell(a.silence_id, "mono"), cell(a.what, "muted"));
    ab.append(tr);
  }
  const pick = $("#silence-endpoint"), chosen = pick.value;
  pick.replaceChildren(el("option", "Every endpoint"));
  pick.firstChild.value = "";
  for (const e of await api("GET", "/api/endpoints")) { const o = el("option", e.name); o.value = e.id; pick.append(o); }
  pick.value = chosen;
}
function silenceMessage(text) { $("#silence-error").textContent = ""; $("#silence-message").textContent = text; }
$("#silence-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { matchers: $("#silence-matchers").value.split(/\s+/).filter(Boolean), match_all: $("#silence-match-all").checked,
    author: $("#silence-who").value, comment: $("#silence-comment").value };
  const ep = $("#silence-endpoint").value, d = $("#silence-duration").value.trim(), end = $("#silence-ends").value.trim();
  if (ep) body.endpoint_id = ep; if (d) body.duration = d; if (end) body.ends_at = end;
  try {
    const s = await api("POST", "/api/silences", body);
    silenceMessage(`Created ${s.id}`);
    $("#silence-matchers").value = ""; $("#silence-comment").value = "";
  } catch (err) { $("#silence-message").textContent = ""; $("#silence-error").textContent = err.message; return; }
  await loadSilences();
});
$("#silences-refresh").addEventListener("click", () => loadSilences());
loadSilences();
