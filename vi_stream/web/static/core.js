// The page's common ground: the REST call, toasts, the login, the image cache and small formatters.

export const $ = (sel, root = document) => root.querySelector(sel);
export const session = { required: false, loggedIn: false, csrf: null, operator: null };

// ------------------------------------------------------------------ REST
export async function api(method, path, body, contentType) {
  const headers = {};
  if (session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let payload;
  if (body instanceof Uint8Array) { payload = body; headers["Content-Type"] = contentType || "image/png"; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  let res;
  try { res = await fetch(path, { method, headers, body: payload, credentials: "same-origin" }); }
  catch (e) {   // no answer at all: the browser's "Failed to fetch" tells an operator nothing
    const err = new Error(`The daemon is unreachable (${method} ${path.split("?")[0]} got no answer): is it running?`);
    err.status = 0; err.unreachable = true;
    throw err;
  }
  let data = null;
  try { data = await res.json(); } catch (e) { data = { message: res.statusText }; }
  if (!res.ok) {
    const err = new Error(data.message || res.statusText);
    err.status = res.status; err.data = data;
    throw err;
  }
  return data;
}

// ------------------------------------------------------------------ the latest request
// A view's requests may answer out of order: an older, slower answer after a newer one's would draw what
// the operator no longer asked for (another filter, range, tile, or a side decided since). Each view
// keeps `const ask = latest()`; each load takes `const current = ask()` and draws only while `current()`,
// that is while no newer load of that view has started.
export function latest() {
  let asked = 0;
  return () => { const mine = ++asked; return () => mine === asked; };
}

export function toast(text, ok = false) {
  const t = $("#toast");
  t.textContent = text; t.className = ok ? "ok" : ""; t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, ok ? 2500 : 8000);
}

export async function act(fn, done) {
  try { const r = await fn(); if (done) toast(done, true); return r; }
  catch (e) {
    if (e.status === 401) { toast("Log in first: " + e.message); openLogin(); }
    else toast(e.message);
    throw e;
  }
}

// ------------------------------------------------------------------ login
export async function loadSession() {
  const s = await api("GET", "/api/session");
  Object.assign(session, { required: s.auth_required, loggedIn: s.logged_in, csrf: s.csrf, operator: s.operator });
  $("#login-open").hidden = !session.required || session.loggedIn;
  $("#logout").hidden = !session.loggedIn;
  $("#who").textContent = !session.required ? "no token set: changes open to all on this host"
    : session.loggedIn ? (session.operator ? "logged in as " + session.operator : "logged in") : "read-only";
  $("#who").title = session.required && !session.loggedIn ? "log in to start, stop or change anything" : "";
  document.body.classList.toggle("read-only", session.required && !session.loggedIn);
  markAuth(document);
}

// Read-only mode shows on every control that needs a login: marked, with the reason; a click still opens the login.
export function markAuth(root) {
  const ro = session.required && !session.loggedIn;
  for (const el of root.querySelectorAll(".needs-auth")) {
    // marked, not disabled: a click still opens the login (a disabled button would take no click at all)
    if (ro) { el.dataset.locked = "log in to change this"; el.title = "Read-only: log in to change this"; }
    else if (el.dataset.locked) { delete el.dataset.locked; el.title = ""; }
  }
}
new MutationObserver((changes) => {   // views are drawn from templates: mark what they add
  if (!(session.required && !session.loggedIn)) return;
  for (const c of changes) for (const n of c.addedNodes)
    if (n.nodeType === 1 && (n.childElementCount || n.classList.contains("needs-auth"))) markAuth(n.parentElement || n);
}).observe(document.getElementById("view"), { childList: true, subtree: true });

export function openLogin() { $("#login-error").hidden = true; $("#login").showModal(); $("#login-token").focus(); }

export function setupLogin() {
  $("#login-open").onclick = openLogin;
  $("#login-cancel").onclick = () => $("#login").close();
  $("#login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/login", { token: $("#login-token").value });
      $("#login-token").value = "";
      $("#login").close();
      await loadSession();
      toast("Logged in", true);
    } catch (e) {
      $("#login-error").textContent = e.message; $("#login-error").hidden = false;
    }
  };
  $("#logout").onclick = async () => { await api("POST", "/api/logout"); await loadSession(); };
}

const images = new Map();   // id -> HTMLImageElement (ids are content hashes: immutable)
export function image(id) {
  if (images.has(id)) return images.get(id);
  const p = new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => { images.delete(id); reject(new Error("image " + id + " not found")); };
    img.src = "/api/images/" + id;
  });
  images.set(id, p);
  if (images.size > 64) images.delete(images.keys().next().value);
  return p;
}

export function kv(sel, obj) {
  const el = $(sel);
  if (!el) return;
  el.replaceChildren(...Object.entries(obj).flatMap(([k, v]) => {
    const a = document.createElement("span"), b = document.createElement("span");
    a.textContent = k; b.textContent = v == null ? "–" : String(v);
    return [a, b];
  }));
}

export function fmt(x) { return x == null || Number.isNaN(x) ? "–" : Number(x).toPrecision(4); }

// One date format on every page: local time, YYYY-MM-DD HH:MM:SS (the zone in the title of the page's clock).
export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// A view's parameters live in the URL after the hash: #/history?verdict=good&module=M- (bookmarks, back button).
export function hashParams() {
  const h = location.hash, q = h.indexOf("?");
  return new URLSearchParams(q < 0 ? "" : h.slice(q + 1));
}

export function toLocal(iso) {
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

export function rows(sel, items, cells) {
  const body = $(sel + " tbody");
  if (!body) return;
  body.replaceChildren(...items.map((it) => {
    const tr = document.createElement("tr");
    for (const v of cells(it)) {
      const td = document.createElement("td");
      if (v instanceof Node) td.append(v); else td.textContent = v ?? "";
      tr.append(td);
    }
    return tr;
  }));
}
