// The live side: one event stream per tab (status, verdicts, frames), the monitor view and its trends.
import { $, act, api, fmt, image, kv, toast } from "./core.js";
import { frameSeen, linkChanged, statusSeen } from "./health.js";
import { bindTrends, drawTrends, setupTrends, trendsFromStatus } from "./trendplot.js";
import { roiOverlay, setupRoi } from "./roi.js";

const live = { status: null, trends: [], binS: 10, recent: [], frame: null, latencies: [], drift: [], driftJudged: -1,
               limits: null, range: 3600 };
window.vi = live;   // for people debugging in the console, and for the browser tests
bindTrends(live);

// ------------------------------------------------------------------ live stream (one per tab)
// EventSource retries by itself only after a stream that was open ends; a refusal (503: every
// stream taken, the daemon restarting) closes it for good. Then the page reconnects itself, with
// capped exponential back-off, and says so in #link (data-state: live | reconnecting | waiting).
//
// The stream names this tab (?tab=, 128 random bits kept in sessionStorage: the same after a reload,
// another in another tab): the daemon ends this tab's earlier stream for it, which a reloaded page
// leaves open until the daemon's writes find it gone, and never another tab's. A duplicated tab
// starts with a copy of its origin's sessionStorage: when its stream ends the other's, that one
// is told ("superseded") and takes a fresh id, so the two do not take turns.
let source = null, retryDelay = 0, retryTimer = null;
const RETRY_MIN_MS = 1000, RETRY_MAX_MS = 30000, TAB_KEY = "vi.tab";
let tab = null;
function linkState(state, text) { const l = $("#link"); l.dataset.state = state; l.textContent = text; linkChanged(state); }
function tabId(fresh = false) {
  if (!tab) try { tab = sessionStorage.getItem(TAB_KEY); } catch { /* storage off: a new id per page */ }
  if (fresh || !/^[0-9a-f]{32}$/.test(tab || "")) {
    tab = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
    try { sessionStorage.setItem(TAB_KEY, tab); } catch { /* kept for this page only */ }
  }
  return tab;
}
export function connect(freshTab = false) {
  clearTimeout(retryTimer); retryTimer = null;
  source = new EventSource("/api/events?tab=" + tabId(freshTab));
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
  on("superseded", () => { source.close(); connect(true); });   // a duplicate of this tab took its id
  on("status", onStatus);
  on("trends", (t) => { if (live.range === 3600) { live.binS = t.bin_s; live.trends = t.bins; live.drift = t.drift || live.drift; drawTrends(); } });
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
  statusSeen(s);
  trendsFromStatus(s);
  if (s.drift_judged !== undefined && s.drift_judged !== live.driftJudged) {   // a chunk was judged: its figures
    live.driftJudged = s.drift_judged;
    api("GET", "/api/drift").then((d) => {
      live.limits = d.drift.limits;
      const since = Date.now() / 1000 - live.range;
      const known = new Set(live.drift.map((c) => c.t));
      for (const c of d.drift.chunks) if (!known.has(c.at) && c.at >= since) live.drift.push({ ...c, t: c.at });
      drawTrends();
    }, () => {});
  }
  if (!$("#stats")) return;
  const st = s.statistics, q = st.queues, store = st.store;
  $("#start").disabled = s.status === "processing";
  $("#stop").disabled = s.status !== "processing";
  kv("#model", { model: s.model_version ? `${s.model_version} (id ${s.model_id})` : `${s.model_id} (a file, no registry)`,
                 drift: s.drift,
                 ...(s.shadow ? { shadow: `${s.shadow.candidate}: ${s.shadow.agreed} of ${s.shadow.compared} agree` } : {}),
                 "model's threshold": fmt(s.model_threshold),
                 "threshold in force": s.threshold == null ? fmt(s.model_threshold) + " (model's)" : fmt(s.threshold),
                 "yellow from": `${fmt(s.yellow_from)} (${s.yellow_rule})` });
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

// The verdict feeds the strip at once; the caption and the QA dot follow the frame drawn (drawFrame), so
// they always name the pulse on screen, also on a fresh load and with the line stopped.
function onVerdict(v) {
  live.recent.push(v);
  if (live.recent.length > 60) live.recent.shift();
  drawStrip();
}

export const QA_TEXT = { green: "good", yellow: "near threshold", red: "anomalous", grey: "rejected" };
const QA_GLYPH = { green: "✓", yellow: "!", red: "✕", grey: "–" };

function drawStrip() {
  const strip = $("#strip");
  if (!strip) return;
  strip.replaceChildren(...live.recent.slice(-60).map((v) => {
    const c = document.createElement("span");
    c.className = "chip " + v.qa; c.textContent = QA_GLYPH[v.qa]; c.setAttribute("role", "listitem");
    c.title = (v.reason ? `rejected: ${v.reason}` : `${v.module} ${v.side} pulse ${v.pulse_id}: ${fmt(v.score)}`) +
      ` (${QA_TEXT[v.qa]})`;
    c.setAttribute("aria-label", c.title);
    return c;
  }));
}

function caption(f) {
  $("#qa").className = "qa " + f.qa;
  $("#qa").textContent = QA_GLYPH[f.qa];
  $("#qa-text").textContent = QA_TEXT[f.qa]; $("#qa-text").className = "qa-text " + f.qa;
  $("#now-module").textContent = `${f.module} · ${f.side} · pulse ${f.pulse_id}`;
  $("#now-score").textContent = `score ${fmt(f.score)} / threshold ${fmt(f.threshold)}` +
    (f.defects ? ` · ${f.defects} defect(s)` : "");
  $("#frame").setAttribute("aria-label", `${f.module} ${f.side} pulse ${f.pulse_id}: ${QA_TEXT[f.qa]}, score ` +
    `${fmt(f.score)} against ${fmt(f.threshold)}, ${f.boxes_total} defect box(es)`);
}

async function onFrame(f) {
  live.frame = f;
  frameSeen(f);
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
  roiOverlay(g, f);
  c.dataset.pulse = f.pulse_id;
  c.dataset.qa = f.qa;
  caption(f);
}

export function redrawFrame() {
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

// ------------------------------------------------------------------ monitor view
export function monitorView(root) {
  root.append($("#t-monitor").content.cloneNode(true));
  $("#start").onclick = () => act(() => api("POST", "/start"), "Processing started").catch(() => {});
  $("#stop").onclick = () => act(() => api("POST", "/stop"), "Processing stopped").catch(() => {});
  $("#threshold-form").onsubmit = (ev) => {
    ev.preventDefault();
    const text = $("#threshold").value, v = parseFloat(text);
    if (!(v > 0)) { toast("The threshold must be a number above 0"); return; }
    act(() => api("POST", "/config", { threshold: v }), `Threshold set to ${v}`).then(() => {
      const box = $("#threshold");   // emptied only if it still holds what was sent: a value typed since stays
      if (box && box.value === text) box.value = "";
    }, () => {});
  };
  $("#threshold-model").onclick = () => act(() => api("POST", "/config", { threshold: null }), "Threshold: the model's").catch(() => {});
  for (const id of ["#show-heat", "#heat-opacity", "#show-boxes"]) $(id).oninput = redrawFrame;
  setupRoi(live, redrawFrame);
  setupTrends();
  if (live.status) onStatus(live.status);
  drawStrip();
  redrawFrame();
}
