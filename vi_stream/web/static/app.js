// vi_stream operator page: monitor, history, module review. Plain JavaScript, no build step,
// no library; talks only to the daemon that served it (REST + Server-Sent Events).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const session = { required: false, loggedIn: false, csrf: null };
const live = { status: null, trends: [], binS: 10, recent: [], frame: null, latencies: [], drift: [], driftJudged: -1 };
window.vi = live;   // for people debugging in the console, and for the browser tests

// ------------------------------------------------------------------ REST
async function api(method, path, body, contentType) {
  const headers = {};
  if (session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let payload;
  if (body instanceof Uint8Array) { payload = body; headers["Content-Type"] = contentType || "image/png"; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  const res = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  let data = null;
  try { data = await res.json(); } catch (e) { data = { message: res.statusText }; }
  if (!res.ok) {
    const err = new Error(data.message || res.statusText);
    err.status = res.status; err.data = data;
    throw err;
  }
  return data;
}

function toast(text, ok = false) {
  const t = $("#toast");
  t.textContent = text; t.className = ok ? "ok" : ""; t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, ok ? 2500 : 8000);
}

async function act(fn, done) {
  try { const r = await fn(); if (done) toast(done, true); return r; }
  catch (e) {
    if (e.status === 401) { toast("Log in first: " + e.message); openLogin(); }
    else toast(e.message);
    throw e;
  }
}

// ------------------------------------------------------------------ login
async function loadSession() {
  const s = await api("GET", "/api/session");
  Object.assign(session, { required: s.auth_required, loggedIn: s.logged_in, csrf: s.csrf });
  $("#login-open").hidden = !session.required || session.loggedIn;
  $("#logout").hidden = !session.loggedIn;
  $("#who").textContent = !session.required ? "no token set: changes open to all on this host"
    : session.loggedIn ? "logged in" : "read-only";
  document.body.classList.toggle("read-only", session.required && !session.loggedIn);
}

function openLogin() { $("#login-error").hidden = true; $("#login").showModal(); $("#login-token").focus(); }

function setupLogin() {
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

// ------------------------------------------------------------------ live stream (one per tab)
// EventSource retries by itself only after a stream that was open ends; a refusal (503: every
// stream taken, the daemon restarting) closes it for good. Then the page reconnects itself, with
// capped exponential back-off, and says so in #link (data-state: live | reconnecting | waiting).
let source = null, retryDelay = 0, retryTimer = null;
const RETRY_MIN_MS = 1000, RETRY_MAX_MS = 30000;
function linkState(state, text) { const l = $("#link"); l.dataset.state = state; l.textContent = text; }
function connect() {
  clearTimeout(retryTimer); retryTimer = null;
  source = new EventSource("/api/events");
  source.onopen = () => { retryDelay = 0; linkState("live", "live"); };
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) { linkState("reconnecting", "reconnecting…"); return; }
    source.close();
    retryDelay = Math.min(RETRY_MAX_MS, retryDelay ? retryDelay * 2 : RETRY_MIN_MS);
    const at = Date.now() + retryDelay;
    const tick = () => {
      const s = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      linkState("waiting", `offline: retrying in ${s} s`);
      retryTimer = s > 0 ? setTimeout(tick, Math.min(1000, at - Date.now())) : setTimeout(connect, 0);
    };
    tick();
  };
  const on = (name, fn) => source.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
  on("status", onStatus);
  on("trends", (t) => { live.binS = t.bin_s; live.trends = t.bins; drawTrends(); });
  on("recent", (items) => { live.recent = items; drawStrip(); });
  on("verdict", onVerdict);
  on("reject", onVerdict);
  on("frame", onFrame);
  on("logs", (lines) => { $("#log") && ($("#log").textContent = ""); lines.forEach(addLog); });
  on("log", addLog);
}

function onStatus(s) {
  live.status = s;
  const state = $("#state");
  state.textContent = s.status; state.className = "badge " + s.status;
  for (const b of s.trend || []) {
    const i = live.trends.findIndex((x) => x.t === b.t);
    if (i >= 0) live.trends[i] = b; else live.trends.push(b);
  }
  if (s.drift_judged !== undefined && s.drift_judged !== live.driftJudged) {   // a chunk was judged: its figures
    live.driftJudged = s.drift_judged;
    api("GET", "/api/drift").then((d) => { live.drift = d.drift.chunks; drawTrends(); }, () => {});
  }
  const hour = Date.now() / 1000 - 3600;
  live.trends = live.trends.filter((b) => b.t >= hour);
  if (!$("#stats")) return;
  const st = s.statistics, q = st.queues, store = st.store;
  $("#start").disabled = s.status === "processing";
  $("#stop").disabled = s.status !== "processing";
  kv("#model", { model: s.model_id, version: s.model_version || "a file (no registry)", drift: s.drift,
                 ...(s.shadow ? { shadow: `${s.shadow.candidate}: ${s.shadow.agreed} of ${s.shadow.compared} agree` } : {}),
                 "model's threshold": fmt(s.model_threshold),
                 "threshold in force": s.threshold == null ? fmt(s.model_threshold) + " (model's)" : fmt(s.threshold),
                 "yellow from": fmt((s.threshold ?? s.model_threshold) * (1 - s.qa_margin)) });
  const th = $("#threshold");
  if (document.activeElement !== th) th.placeholder = fmt(s.threshold ?? s.model_threshold);
  kv("#stats", { "frames/s": st.frames_per_s, "MP/s": st.megapixels_per_s, received: st.frames_received,
                 processed: st.frames_processed, anomalous: st.frames_anomalous,
                 "latency p50 / p99 ms": `${st.latency_ms.p50 ?? "–"} / ${st.latency_ms.p99 ?? "–"}`,
                 "sent / dropped": `${st.output_sent} / ${st.output_dropped}`, "live tabs": s.live.listeners });
  kv("#queues", { input: `${q.input} of ${q.input_size}`, output: `${q.output} of ${q.output_size}`,
                  store: store ? `${store.queue} of ${store.queue_size}` : "–" });
  kv("#store", store ? { state: store.up ? "up" : "DOWN", where: store.store, stored: store.stored,
                         spooled: store.spooled, failed: store.failed, lost: store.lost,
                         "last error": store.last_error || "–" } : { state: "off" });
  const rej = st.frames_rejected;
  kv("#rejects", Object.keys(rej).length ? rej : { none: "" });
  drawTrends();
}

function onVerdict(v) {
  live.recent.push(v);
  if (live.recent.length > 60) live.recent.shift();
  drawStrip();
  if (!$("#qa")) return;
  $("#qa").className = "qa " + v.qa;
  if (v.reason) { $("#now-module").textContent = `rejected: ${v.reason}`; return; }
  $("#now-module").textContent = `${v.module} · ${v.side} · pulse ${v.pulse_id}`;
  $("#now-score").textContent = `score ${fmt(v.score)} / threshold ${fmt(v.threshold)}` +
    (v.defects ? ` · ${v.defects} defect(s)` : "");
}

function drawStrip() {
  const strip = $("#strip");
  if (!strip) return;
  strip.replaceChildren(...live.recent.slice(-60).map((v) => {
    const c = document.createElement("span");
    c.className = "chip " + v.qa;
    c.title = v.reason ? `rejected: ${v.reason}` : `${v.module} ${v.side} pulse ${v.pulse_id}: ${fmt(v.score)}`;
    return c;
  }));
}

const images = new Map();   // id -> HTMLImageElement (ids are content hashes: immutable)
function image(id) {
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

async function onFrame(f) {
  live.frame = f;
  if (!$("#frame") || document.hidden) return;   // a tab in the background fetches nothing; shown again, it draws the latest
  try {
    const [img, heat] = await Promise.all([image(f.image_id), image(f.heatmap_id)]);
    if (live.frame !== f) return;   // a newer frame came meanwhile
    drawFrame(f, img, heat);
    live.latencies.push(Date.now() / 1000 - f.t_result);
    if (live.latencies.length > 1000) live.latencies.shift();
  } catch (e) { /* the preview left the cache: the next frame will do */ }
}

function drawFrame(f, img, heat) {
  const c = $("#frame");
  if (!c) return;
  if (c.width !== img.width || c.height !== img.height) { c.width = img.width; c.height = img.height; }
  const g = c.getContext("2d");
  g.globalAlpha = 1; g.drawImage(img, 0, 0);
  if ($("#show-heat").checked) { g.globalAlpha = $("#heat-opacity").value / 100; g.drawImage(heat, 0, 0); }
  g.globalAlpha = 1;
  if ($("#show-boxes").checked) {
    g.strokeStyle = "#ff2d55"; g.lineWidth = 2;
    for (const d of f.boxes) {
      const [x, y, w, h] = d.bbox.map((v) => v * f.preview_scale);
      g.strokeRect(x - 2, y - 2, w + 4, h + 4);
    }
  }
  c.dataset.pulse = f.pulse_id;
  c.dataset.qa = f.qa;
}

function redrawFrame() {
  const f = live.frame;
  if (f) Promise.all([image(f.image_id), image(f.heatmap_id)]).then(([a, b]) => drawFrame(f, a, b), () => {});
}

function addLog(line) {
  const pre = $("#log");
  if (!pre) return;
  const span = document.createElement("span");
  span.className = line.level;
  span.textContent = `${new Date(line.t * 1000).toLocaleTimeString()} ${line.level} ${line.message}\n`;
  pre.appendChild(span);
  while (pre.childNodes.length > 300) pre.removeChild(pre.firstChild);
  pre.scrollTop = pre.scrollHeight;
}

function kv(sel, obj) {
  const el = $(sel);
  if (!el) return;
  el.replaceChildren(...Object.entries(obj).flatMap(([k, v]) => {
    const a = document.createElement("span"), b = document.createElement("span");
    a.textContent = k; b.textContent = v == null ? "–" : String(v);
    return [a, b];
  }));
}

function fmt(x) { return x == null || Number.isNaN(x) ? "–" : Number(x).toPrecision(4); }

// ------------------------------------------------------------------ trend plots
function plot(sel, series, colours, fixedMax) {
  const c = $(sel);
  if (!c) return;
  const g = c.getContext("2d"), W = c.width, H = c.height, now = Date.now() / 1000;
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
  const vals = series.flatMap((s) => s.map((p) => p[1]).filter((v) => v != null));
  const max = fixedMax ?? Math.max(1e-9, ...vals) * 1.1;
  g.fillStyle = "#8a93a3"; g.font = "10px sans-serif";
  g.fillText(fmt(max), 2, 10); g.fillText("-1 h", 2, H - 2); g.fillText("now", W - 22, H - 2);
  series.forEach((s, i) => {
    g.strokeStyle = colours[i]; g.lineWidth = 1.5; g.beginPath();
    let pen = false;
    for (const [t, v] of s) {
      if (v == null) { pen = false; continue; }
      const x = W * (1 - (now - t) / 3600), y = H - 12 - (H - 20) * Math.min(1, v / max);
      if (pen) g.lineTo(x, y); else g.moveTo(x, y);
      pen = true;
    }
    g.stroke();
  });
}

function drawTrends() {
  const b = live.trends, at = (k) => b.map((x) => [x.t + live.binS / 2, x[k]]);
  plot("#tr-score", [at("score_p50"), at("score_p90"), at("score_max")], ["#2e6fd9", "#d9a400", "#d23c3c"]);
  plot("#tr-anom", [at("anomalous_fraction")], ["#d23c3c"], 1);
  plot("#tr-fps", [at("fps")], ["#2e9d4f"]);
  plot("#tr-lat", [at("latency_p99_ms")], ["#6b4fd9"]);
  plot("#tr-drift", [live.drift.map((c) => [c.at, c.ks]), live.drift.map((c) => [c.at, c.wasserstein])],
       ["#2e6fd9", "#d9a400"]);
}

// ------------------------------------------------------------------ monitor view
function monitorView(root) {
  root.append($("#t-monitor").content.cloneNode(true));
  $("#start").onclick = () => act(() => api("POST", "/start"), "Processing started");
  $("#stop").onclick = () => act(() => api("POST", "/stop"), "Processing stopped");
  $("#threshold-form").onsubmit = (ev) => {
    ev.preventDefault();
    const v = parseFloat($("#threshold").value);
    if (!(v > 0)) { toast("The threshold must be a number above 0"); return; }
    act(() => api("POST", "/config", { threshold: v }), `Threshold set to ${v}`).then(() => { $("#threshold").value = ""; });
  };
  $("#threshold-model").onclick = () => act(() => api("POST", "/config", { threshold: null }), "Threshold: the model's");
  for (const id of ["#show-heat", "#heat-opacity", "#show-boxes"]) $(id).oninput = redrawFrame;
  if (live.status) onStatus(live.status);
  drawStrip();
  redrawFrame();
}

// ------------------------------------------------------------------ history view
const hist = { params: new URLSearchParams(), skip: 0, limit: 50 };

function historyView(root) {
  root.append($("#t-history").content.cloneNode(true));
  const form = $("#filters");
  for (const [k, v] of hist.params) if (form.elements[k]) form.elements[k].value = k === "from" || k === "to" ? toLocal(v) : v;
  form.onsubmit = (ev) => {
    ev.preventDefault();
    hist.params = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name || !el.value) continue;
      hist.params.set(el.name, el.type === "datetime-local" ? new Date(el.value).toISOString() : el.value);
    }
    hist.skip = 0;
    loadHistory();
  };
  $("#prev").onclick = () => { hist.skip = Math.max(0, hist.skip - hist.limit); loadHistory(); };
  $("#next").onclick = () => { hist.skip += hist.limit; loadHistory(); };
  loadHistory();
}

function toLocal(iso) {
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

async function loadHistory() {
  const p = new URLSearchParams(hist.params);
  p.set("limit", hist.limit); p.set("skip", hist.skip);
  const started = performance.now();
  let data;
  try { data = await api("GET", "/api/history?" + p); } catch (e) { toast(e.message); return; }
  const body = $("#history tbody");
  if (!body) return;
  body.replaceChildren(...data.sides.map((r) => {
    const tr = document.createElement("tr");
    const cells = [new Date(r.processed_at).toLocaleString(), null, r.side,
                   r.is_anomalous ? "anomalous" : "good", fmt(r.score), r.defects,
                   `${r.verified} of ${r.tile_count}`, r.tag, r.model_version || r.model_id];
    cells.forEach((v, i) => {
      const td = document.createElement("td");
      if (i === 1) {
        const a = document.createElement("a");
        a.href = "#/module/" + encodeURIComponent(r.module); a.textContent = r.module;
        td.append(a);
      } else td.textContent = v ?? "";
      if (i === 3) td.className = v;
      tr.append(td);
    });
    return tr;
  }));
  const first = data.total ? data.skip + 1 : 0, last = data.skip + data.sides.length;
  $("#page-info").textContent = `${first}–${last} of ${data.total} (${Math.round(performance.now() - started)} ms)`;
  $("#prev").disabled = data.skip === 0;
  $("#next").disabled = last >= data.total;
  $("#history").dataset.total = data.total;
}

// ------------------------------------------------------------------ models: versions, aliases, their log
const reg = { aliases: {} };

function modelsView(root) {
  root.append($("#t-models").content.cloneNode(true));
  $("#rollback").onclick = () => {
    const alias = $("#alias-name").value, reason = $("#alias-reason").value.trim();
    if (!reason) { toast("Give a reason: it is kept in the log"); return; }
    act(() => api("POST", `/api/aliases/${encodeURIComponent(alias)}/rollback`, { reason }),
        `${alias} rolled back`).then(loadModels, () => loadModels());
  };
  loadModels();
}

function promote(doc) {
  const alias = $("#alias-name").value, reason = $("#alias-reason").value.trim();
  if (!reason) { toast("Give a reason: it is kept in the log"); return; }
  const t = reg.aliases[alias], expected = t ? `${t.name}@${t.version}` : "";
  act(() => api("POST", `/api/aliases/${encodeURIComponent(alias)}`,
                { name: doc.name, version: doc.version, reason, expected, force: $("#alias-force").checked }),
      `${alias} -> ${doc.name}@${doc.version}`).then(loadModels, () => loadModels());
}

function gateText(gate) {   // the newest gate set's figures (ids sort by time)
  const ids = Object.keys(gate || {}).sort();
  if (!ids.length) return "–";
  const m = gate[ids[ids.length - 1]];
  return `${fmt(m.recall)} / ${fmt(m.false_alarm_rate)}`;
}

function rows(sel, items, cells) {
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

async function loadModels() {
  let models, aliases;
  try { [models, aliases] = await Promise.all([api("GET", "/api/models"), api("GET", "/api/aliases")]); }
  catch (e) { if ($("#aliases")) $("#aliases").textContent = e.message; return; }
  reg.aliases = aliases.aliases;
  const shown = {};
  for (const [a, t] of Object.entries(aliases.aliases)) shown[a] = `${t.name}@${t.version} (since ${toLocal(t.set_at)})`;
  kv("#aliases", Object.keys(shown).length ? shown : { none: "promote a version below" });
  rows("#models", models.models, (d) => {
    const b = document.createElement("button");
    b.textContent = "Promote"; b.className = "needs-auth"; b.dataset.ref = `${d.name}@${d.version}`;
    b.onclick = () => promote(d);
    return [`${d.name}@${d.version}`, d.sha256.slice(0, 12), d.metadata.backbone, d.metadata.tile,
            fmt(d.metadata.threshold), `${toLocal(d.registered_at)} by ${d.registered_by}`, gateText(d.gate),
            d.aliases.join(", "), b];
  });
  rows("#alias-log", aliases.changes, (c) => [toLocal(c.at), c.alias, c.from || "–", c.to, c.action, c.by, c.reason]);
  $("#models").dataset.ready = "1";
}

// ------------------------------------------------------------------ batches on Slurm
async function batchesView(root) {
  root.append($("#t-batches").content.cloneNode(true));
  let data;
  try { data = await api("GET", "/api/batches"); } catch (e) { toast(e.message); return; }
  rows("#batches", data.batches, (b) => {
    const a = document.createElement("a");
    a.href = "#/batches"; a.textContent = b.id;
    a.onclick = async (ev) => {
      ev.preventDefault();
      const pre = $("#batch-detail");
      pre.textContent = JSON.stringify((await api("GET", "/api/batches/" + encodeURIComponent(b.id))).batch, null, 2);
      pre.hidden = false;
    };
    return [a, b.state, b.inputs.length, b.progress || "", b.stored ?? "", b.jobs.length,
            toLocal(b.created_at), b.created_by, b.error || ""];
  });
  $("#batches").dataset.ready = "1";
}

// ------------------------------------------------------------------ module review
const review = { module: null, side: null, tile: 0, layer: "original" };

async function moduleView(root, name) {
  root.append($("#t-module").content.cloneNode(true));
  $("#module-name").textContent = name;
  $("#layer").value = review.layer;
  $("#layer").onchange = () => { review.layer = $("#layer").value; drawSides(); if (editor.box) editor.load(); };
  $("#mask-opacity").oninput = () => { drawSides(); editor.paint(); };
  setupEditor();
  await loadModule(name);
}

async function loadModule(name) {
  try { review.module = (await api("GET", "/api/modules/" + encodeURIComponent(name))).module; }
  catch (e) { $("#sides").textContent = e.message; return; }
  drawSides();
}

function sideInfo(s) {
  const verified = s.verified_masks.filter(Boolean).length;
  return `${s.is_anomalous ? "anomalous" : "good"} · score ${fmt(s.score)} · ${verified} of ${s.tile_count} tiles verified` +
    ` · model ${s.model_version || s.model_id}` + (s.threshold ? `, threshold ${fmt(s.threshold)}` : "");
}

async function drawSides() {
  const m = review.module, holder = $("#sides");
  if (!m || !holder) return;
  holder.replaceChildren();
  for (const name of ["left", "right"]) {
    const s = m[name];
    if (!s) continue;
    const box = document.createElement("div");
    box.className = "side"; box.id = "side-" + name;
    const h = document.createElement("h3");
    h.textContent = `${name}: ${sideInfo(s)}`;
    const c = document.createElement("canvas");
    box.append(h, c);
    holder.append(box);
    const img = await image(s[review.layer].thumbnail.src_id);
    const mask = await image(s.corrected_mask.thumbnail.src_id);
    const k = img.width / s.image_shape[1];
    c.width = img.width; c.height = img.height;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    g.globalAlpha = $("#mask-opacity").value / 100; g.drawImage(tint(mask, [255, 45, 85]), 0, 0); g.globalAlpha = 1;
    s.tiles.forEach(([x, y, w, hh], i) => {
      g.strokeStyle = s.verified_masks[i] ? "#2e9d4f" : "rgba(255,255,255,.6)";
      g.lineWidth = s.verified_masks[i] ? 2 : 1;
      g.strokeRect(x * k + .5, y * k + .5, w * k - 1, hh * k - 1);
      if (s.verified_masks[i]) { g.fillStyle = "#2e9d4f"; g.fillText("✓", x * k + 3, y * k + 11); }
    });
    c.onclick = (ev) => {
      const r = c.getBoundingClientRect();
      const px = (ev.clientX - r.left) * c.width / r.width / k, py = (ev.clientY - r.top) * c.height / r.height / k;
      const i = s.tiles.findIndex(([x, y, w, hh]) => px >= x && px < x + w && py >= y && py < y + hh);
      if (i >= 0) editor.open(name, i);
    };
    box.dataset.ready = "1";   // drawn, and a click opens a tile
  }
}

function tint(img, rgb) {   // a 0/255 mask image as colour where it is set, transparent elsewhere
  const c = document.createElement("canvas");
  c.width = img.width; c.height = img.height;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < d.data.length; i += 4) {
    const on = d.data[i] > 127;
    d.data[i] = rgb[0]; d.data[i + 1] = rgb[1]; d.data[i + 2] = rgb[2]; d.data[i + 3] = on ? 255 : 0;
  }
  g.putImageData(d, 0, 0);
  return c;
}

// The tile editor: the mask is a Uint8Array (0/255) at 1:1; the brush stamps exact discs, so what
// is saved is exactly what is shown.
const editor = {
  box: null, mask: null, background: null, undo: [], redo: [], drawing: false, last: null,

  side() { return review.module[review.side]; },

  async open(sideName, tile) {
    review.side = sideName; review.tile = tile;
    $("#editor").hidden = false;
    await this.load();
    $("#editor").scrollIntoView({ block: "nearest" });
  },

  async load() {
    const s = this.side(), [x, y, w, h] = s.tiles[review.tile], tile = review.tile;
    this.box = [x, y, w, h];
    this.mask = null;                       // no strokes, save or verify until this tile's mask is in
    delete $("#editor").dataset.ready;
    this.title();
    $("#ed-message").textContent = "";
    const c = $("#ed-canvas");
    c.width = w; c.height = h; c.style.width = w + "px"; c.style.height = h + "px";
    const crop = async (group) => {
      const tiled = s[group].full.tiled_id;
      const img = await image(tiled && tiled.length ? tiled[review.tile] : s[group].full.src_id);
      const off = document.createElement("canvas");
      off.width = w; off.height = h;
      const whole = !(tiled && tiled.length);
      off.getContext("2d").drawImage(img, whole ? x : 0, whole ? y : 0, w, h, 0, 0, w, h);
      return off;
    };
    const [bg, m] = await Promise.all([crop(review.layer), crop("corrected_mask")]);
    if (review.tile !== tile || this.side() !== s) return;      // another tile was opened meanwhile
    this.background = bg;
    const d = m.getContext("2d").getImageData(0, 0, w, h).data;
    this.mask = new Uint8Array(w * h);
    for (let i = 0; i < w * h; i++) this.mask[i] = d[4 * i] > 127 ? 255 : 0;
    this.undo = []; this.redo = [];
    this.paint();
    $("#editor").dataset.ready = String(tile);
  },

  title() {
    const s = this.side();
    $("#ed-title").textContent = `${review.module.name} · ${review.side} · tile ${review.tile + 1} of ${s.tile_count}` +
      (s.verified_masks[review.tile] ? " · verified" : "");
  },

  paint() {
    if (!this.mask) return;
    const [, , w, h] = this.box, c = $("#ed-canvas"), g = c.getContext("2d");
    g.globalAlpha = 1; g.drawImage(this.background, 0, 0);
    const over = g.createImageData(w, h), a = Math.round(255 * $("#mask-opacity").value / 100);
    for (let i = 0; i < w * h; i++) {
      if (!this.mask[i]) continue;
      over.data[4 * i] = 255; over.data[4 * i + 1] = 45; over.data[4 * i + 2] = 85; over.data[4 * i + 3] = a;
    }
    const layer = document.createElement("canvas");
    layer.width = w; layer.height = h;
    layer.getContext("2d").putImageData(over, 0, 0);
    g.drawImage(layer, 0, 0);
  },

  stamp(cx, cy) {
    const [, , w, h] = this.box, r = +$("#ed-size").value / 2, v = this.tool() === "brush" ? 255 : 0;
    for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(h - 1, Math.ceil(cy + r)); y++)
      for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(w - 1, Math.ceil(cx + r)); x++)
        if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) this.mask[y * w + x] = v;
  },

  tool() { return document.querySelector("input[name=tool]:checked").value; },

  strokeTo(x, y) {
    const [x0, y0] = this.last || [x, y], steps = Math.max(1, Math.ceil(Math.hypot(x - x0, y - y0)));
    for (let i = 1; i <= steps; i++) this.stamp(x0 + (x - x0) * i / steps, y0 + (y - y0) * i / steps);
    this.last = [x, y];
    this.paint();
  },

  history(from, to) {
    if (!from.length || !this.mask) return;
    to.push(this.mask.slice()); this.mask = from.pop(); this.paint();
  },

  loading() {
    if (this.mask) return false;
    $("#ed-message").textContent = "The tile is still loading: nothing saved.";
    $("#ed-message").className = "error";
    return true;
  },

  async save() {
    if (this.loading()) return;
    const s = this.side(), [, , w, h] = this.box;
    const png = await greyPng(w, h, this.mask);
    const url = `/api/modules/${encodeURIComponent(review.module.name)}/${review.side}/tiles/${review.tile}/mask` +
      `?result_id=${s.result_id}`;
    await this.send(() => api("POST", url, png, "image/png"), "Correction saved; tile verified");
  },

  async verify() {
    if (this.loading()) return;
    const s = this.side();
    const url = `/api/modules/${encodeURIComponent(review.module.name)}/${review.side}/tiles/${review.tile}/verify`;
    await this.send(() => api("POST", url, { verified: true, result_id: s.result_id }), "Tile verified");
  },

  async send(fn, done) {
    try {
      const r = await fn();
      review.module[review.side] = r.side;
      $("#ed-message").textContent = done;
      $("#ed-message").className = "muted";
      this.title();
      drawSides();
    } catch (e) {
      const msg = e.status === 409
        ? `Not saved: this side was re-imaged or changed meanwhile (${e.message}). Your drawing is still here; ` +
          "reload the module to review the new image."
        : e.status === 401 ? "Not saved: log in first." : `Not saved: ${e.message}`;
      $("#ed-message").textContent = msg;
      $("#ed-message").className = "error";
      if (e.status === 401) openLogin();
    }
  },

  step(d) {
    const n = this.side().tile_count;
    review.tile = (review.tile + d + n) % n;
    this.load();
  },
};

function setupEditor() {
  const c = $("#ed-canvas");
  const at = (ev) => { const r = c.getBoundingClientRect(); return [Math.floor(ev.clientX - r.left), Math.floor(ev.clientY - r.top)]; };
  c.onmousedown = (ev) => {
    if (!editor.mask) return;
    editor.undo.push(editor.mask.slice()); editor.redo = [];
    if (editor.undo.length > 50) editor.undo.shift();
    editor.drawing = true; editor.last = null; editor.strokeTo(...at(ev));
  };
  c.onmousemove = (ev) => { if (editor.drawing) editor.strokeTo(...at(ev)); };
  window.onmouseup = () => { editor.drawing = false; editor.last = null; };
  $("#ed-size").oninput = () => { $("#ed-size-v").textContent = $("#ed-size").value; };
  $("#ed-undo").onclick = () => editor.history(editor.undo, editor.redo);
  $("#ed-redo").onclick = () => editor.history(editor.redo, editor.undo);
  $("#ed-prev").onclick = () => editor.step(-1);
  $("#ed-next").onclick = () => editor.step(1);
  $("#ed-save").onclick = () => editor.save();
  $("#ed-verify").onclick = () => editor.verify();
  $("#ed-close").onclick = () => { $("#editor").hidden = true; editor.box = null; };
  document.onkeydown = (ev) => {
    if ($("#editor") === null || $("#editor").hidden || ev.target.matches("input[type=number], input:not([type]), select")) return;
    const k = ev.key.toLowerCase();
    if (ev.ctrlKey && k === "z" && !ev.shiftKey) editor.history(editor.undo, editor.redo);
    else if (ev.ctrlKey && (k === "y" || (k === "z" && ev.shiftKey))) editor.history(editor.redo, editor.undo);
    else if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    else if (k === "arrowright" || k === "n") editor.step(1);
    else if (k === "arrowleft" || k === "p") editor.step(-1);
    else if (k === "b" || k === "e") document.querySelector(`input[name=tool][value=${k === "b" ? "brush" : "eraser"}]`).checked = true;
    else if (k === "s") editor.save();
    else if (k === "v") editor.verify();
    else return;
    ev.preventDefault();
  };
}

// An 8-bit grey PNG (what the review API takes) from 0/255 bytes; deflate by the browser's CompressionStream.
const CRC = new Uint32Array(256).map((_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c; });
function crc32(bytes) { let c = 0xffffffff; for (const b of bytes) c = CRC[(c ^ b) & 255] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; }
function chunk(type, data) {
  const out = new Uint8Array(12 + data.length), dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  out.set([...type].map((ch) => ch.charCodeAt(0)), 4);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}
async function greyPng(w, h, pixels) {
  const raw = new Uint8Array((w + 1) * h);
  for (let y = 0; y < h; y++) raw.set(pixels.subarray(y * w, (y + 1) * w), y * (w + 1) + 1);   // filter 0 per row
  const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  const z = new Uint8Array(await new Response(stream).arrayBuffer());
  const ihdr = new Uint8Array(13), dv = new DataView(ihdr.buffer);
  dv.setUint32(0, w); dv.setUint32(4, h); ihdr[8] = 8; ihdr[9] = 0;
  const parts = [new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", z), chunk("IEND", new Uint8Array())];
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { png.set(p, at); at += p.length; }
  return png;
}
window.viEditor = editor;

// ------------------------------------------------------------------ routing
function route() {
  const root = $("#view"), hash = location.hash || "#/monitor";
  root.replaceChildren();
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  if (hash.startsWith("#/history")) historyView(root);
  else if (hash.startsWith("#/models")) modelsView(root);
  else if (hash.startsWith("#/batches")) batchesView(root);
  else if (hash.startsWith("#/module/")) moduleView(root, decodeURIComponent(hash.slice("#/module/".length)));
  else monitorView(root);
}

setupLogin();
loadSession().catch((e) => toast(e.message));
connect();
window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", () => { if (!document.hidden) redrawFrame(); });
route();
