// The sign-in form: posts the token as JSON (same origin), then opens the page.
const form = document.getElementById("login-form");
const field = document.getElementById("token");
const error = document.getElementById("login-error");
form.addEventListener("submit", async (evt) => {
  evt.preventDefault();
  error.textContent = "";
  let r;
  try {
    r = await fetch("/login", { method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json" }, body: JSON.stringify({ token: field.value }) });
  } catch (err) { error.textContent = err.message; return; }
  if (r.ok) { location.href = "/settings/webhooks"; return; }
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  field.value = "";
  error.textContent = (data && data.reason) || r.statusText;
});
