// Trend plots, hand-written on canvas (no library): axes with values, a time range read from the store
// (GET /api/trends: the trends survive a restart), threshold and critical-value lines dashed, model
// changes marked, the values under the pointer shown beside the plot, and a text alternative on each.
import { $, api, fmt, latest, toast } from "./core.js";

let L = null;   // the live state (live.js)
export function bindTrends(live) { L = live; }

const PAD = { l: 46, r: 8, t: 14, b: 20 };

export function trendsFromStatus(s) {
  for (const b of s.trend || []) {
    const i = L.trends.findIndex((x) => x.t === b.t);
    if (i >= 0) L.trends[i] = b; else L.trends.push(b);
  }
  const since = Date.now() / 1000 - L.range;
  if (L.trends.length && L.trends[0].t < since) L.trends = L.trends.filter((b) => b.t >= since);
}

const ask = latest();   // the latest range asked for: an earlier answer that comes later is dropped

// The range takes effect when its bins are in: until then the plots keep the range they show (a
// redraw in between would put the old range's bins on the new range's axis).
export async function loadRange(seconds) {
  const current = ask();
  const from = new Date(Date.now() - seconds * 1000).toISOString();
  try {
    const t = await api("GET", "/api/trends?from=" + encodeURIComponent(from));
    if (!current()) return;
    L.range = seconds; L.binS = t.bin_s; L.trends = t.bins; L.drift = t.drift;
    if ($("#trend-note")) $("#trend-note").textContent = t.stored ? `${t.bins.length} bins of ${t.bin_s} s, kept in the store`
      : "the store is not reachable: only what this daemon holds in memory";
    drawTrends();
  } catch (e) {
    if (current() && $("#trend-range")) $("#trend-range").value = String(L.range);   // the range still shown
    toast(e.message);
  }
}

export function setupTrends() {
  const sel = $("#trend-range");
  sel.value = String(L.range);
  sel.onchange = () => loadRange(+sel.value);
  for (const c of document.querySelectorAll(".trends canvas")) {
    c.onmousemove = (ev) => hover(c, ev);
    c.onmouseleave = () => { c.nextElementSibling.textContent = ""; };
  }
  loadRange(L.range);
}

function timeText(t, span) {
  const d = new Date(t * 1000);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  return span > 86400 ? `${d.getMonth() + 1}/${d.getDate()} ${hm}` : hm;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v)), m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

// spec: {series: [{key, label, colour, points: [[t, v]], dash}], marks: [[t, text]], fixedMax, caption}
function plot(sel, spec) {
  const c = $(sel);
  if (!c) return;
  const g = c.getContext("2d"), W = c.width, H = c.height, until = Date.now() / 1000, since = until - L.range;
  const X = (t) => PAD.l + (W - PAD.l - PAD.r) * (t - since) / (until - since);
  const vals = spec.series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v != null && Number.isFinite(v)));
  const max = spec.fixedMax ?? niceMax(Math.max(1e-9, ...vals) * 1.05);
  const Y = (v) => H - PAD.b - (H - PAD.t - PAD.b) * Math.min(1, Math.max(0, v / max));
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
  g.strokeStyle = "#c4c9d2"; g.fillStyle = "#3d4552"; g.font = "11px sans-serif"; g.lineWidth = 1; g.setLineDash([]);
  g.textAlign = "right";
  for (const f of [0, 0.5, 1]) {          // y axis: 0, half, max
    const y = Y(max * f);
    g.beginPath(); g.moveTo(PAD.l, y + .5); g.lineTo(W - PAD.r, y + .5); g.stroke();
    g.fillText(fmt(max * f), PAD.l - 4, y + 4);
  }
  g.textAlign = "center";
  for (const f of [0, 1 / 3, 2 / 3, 1]) g.fillText(f === 1 ? "now" : timeText(since + f * L.range, L.range), Math.min(W - 16, Math.max(PAD.l + 14, X(since + f * L.range))), H - 5);
  g.textAlign = "left";
  for (const [t, text] of spec.marks || []) {   // model changes
    const x = X(t);
    g.strokeStyle = "#6b4fd9"; g.setLineDash([2, 3]); g.beginPath(); g.moveTo(x, PAD.t); g.lineTo(x, H - PAD.b); g.stroke();
    g.fillStyle = "#4b2fb9"; g.fillText(text, Math.min(x + 2, W - 80), PAD.t - 3);
  }
  const gap = 3 * L.binS;
  for (const s of spec.series) {
    g.strokeStyle = s.colour; g.lineWidth = s.dash ? 1.2 : 1.8; g.setLineDash(s.dash || []);
    g.beginPath();
    let last = null;
    for (const [t, v] of s.points) {
      if (v == null || t < since) { last = null; continue; }
      if (last !== null && t - last <= Math.max(gap, s.gap || 0)) g.lineTo(X(t), Y(v)); else g.moveTo(X(t), Y(v));
      if (s.points.length < 3) g.fillRect(X(t) - 1.5, Y(v) - 1.5, 3, 3);
      last = t;
    }
    g.stroke();
  }
  g.setLineDash([]);
  c._plot = { spec, X, since, until };
  const lastVals = spec.series.filter((s) => !s.dash).map((s) => {
    const p = [...s.points].reverse().find((q) => q[1] != null);
    return `${s.label} ${p ? fmt(p[1]) : "none"}`;
  });
  const n = spec.series[0].points.length;
  c.setAttribute("aria-label", `${spec.caption} over the last ${rangeText(L.range)}: ${n} point(s); latest ` +
    lastVals.join(", ") + ((spec.marks || []).length ? `; model changed to ${spec.marks.map((m) => m[1]).join(", ")}` : ""));
}

function rangeText(s) { return s >= 86400 ? `${s / 86400} day(s)` : `${s / 3600} h`; }

function hover(c, ev) {
  const p = c._plot, out = c.nextElementSibling;
  if (!p) return;
  const r = c.getBoundingClientRect(), x = (ev.clientX - r.left) * c.width / r.width;
  let best = null;
  for (const s of p.spec.series) for (const q of s.points) {
    if (q[1] == null) continue;
    const d = Math.abs(p.X(q[0]) - x);
    if (!best || d < best.d) best = { d, t: q[0] };
  }
  if (!best || best.d > 12) { out.textContent = ""; return; }
  const at = (s) => { const q = s.points.find((v) => v[0] === best.t); return q && q[1] != null ? fmt(q[1]) : null; };
  const parts = p.spec.series.map((s) => [s.label, at(s)]).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`);
  const extra = p.spec.about ? p.spec.about(best.t) : "";
  out.textContent = `${new Date(best.t * 1000).toLocaleString()}: ${parts.join(" · ")}${extra}`;
}

export function drawTrends() {
  if (!L || !$("#tr-score")) return;
  const b = L.trends, mid = (x) => x.t + L.binS / 2, at = (k) => b.map((x) => [mid(x), x[k]]);
  const marks = [];
  for (let i = 1; i < b.length; i++) {
    const was = b[i - 1].model_version || b[i - 1].model_id, now = b[i].model_version || b[i].model_id;
    if (now && was && now !== was) marks.push([b[i].t, now]);
  }
  const modelAt = (t) => { const x = b.find((q) => mid(q) === t); return x && (x.model_version || x.model_id) ? ` · model ${x.model_version || x.model_id}` : ""; };
  plot("#tr-score", { caption: "score", marks, about: modelAt, series: [
    { label: "p50", colour: "#2361c9", points: at("score_p50") }, { label: "p90", colour: "#9a6a00", points: at("score_p90") },
    { label: "max", colour: "#c62828", points: at("score_max") },
    { label: "threshold", colour: "#3d4552", dash: [6, 4], points: at("threshold") }] });
  plot("#tr-anom", { caption: "fraction anomalous", marks, fixedMax: 1, series: [{ label: "anomalous", colour: "#c62828", points: at("anomalous_fraction") }] });
  plot("#tr-fps", { caption: "frames/s", marks, series: [{ label: "frames/s", colour: "#1a7f37", points: at("fps") }] });
  plot("#tr-lat", { caption: "latency p99 ms", marks, series: [{ label: "p99 ms", colour: "#6b4fd9", points: at("latency_p99_ms") }] });
  const d = L.drift || [], lim = L.limits || { wasserstein_yellow: 1, wasserstein_red: 3 };
  const chunkGap = Infinity;
  plot("#tr-ks", { caption: "drift KS", series: [
    { label: "KS", colour: "#2361c9", points: d.map((c) => [c.t, c.ks]), gap: chunkGap },
    { label: "critical", colour: "#3d4552", dash: [6, 4], points: d.map((c) => [c.t, c.ks_critical]), gap: chunkGap }] });
  plot("#tr-w", { caption: "drift Wasserstein (spreads)", series: [
    { label: "Wasserstein", colour: "#9a6a00", points: d.map((c) => [c.t, c.wasserstein]), gap: chunkGap },
    { label: "yellow limit", colour: "#9a6a00", dash: [3, 3], points: d.length ? [[d[0].t, lim.wasserstein_yellow], [d[d.length - 1].t, lim.wasserstein_yellow]] : [], gap: chunkGap },
    { label: "red limit", colour: "#c62828", dash: [6, 4], points: d.length ? [[d[0].t, lim.wasserstein_red], [d[d.length - 1].t, lim.wasserstein_red]] : [], gap: chunkGap }] });
}
