// History: stored sides, filtered and paged. The filters live in the URL (#/history?verdict=good&...), so a
// view can be bookmarked and shared and the back button returns to the previous filters; the page
// refreshes itself every few seconds, so new sides appear.
import { $, api, fmt, hashParams, latest, toast, toLocal, when } from "./core.js";

const FIELDS = ["from", "to", "verdict", "reviewed", "decision", "tag", "module", "model_version", "sort", "order"];
const LIMIT = 50, REFRESH_MS = 5000;
let timer = null;
const ask = latest();   // the latest list asked for: an earlier answer that comes later is dropped

export function historyView(root) {
  root.append($("#t-history").content.cloneNode(true));
  const form = $("#filters"), params = hashParams();
  for (const k of FIELDS) {
    const v = params.get(k);
    if (v && form.elements[k]) form.elements[k].value = k === "from" || k === "to" ? toLocal(v) : v;
  }
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name || !el.value) continue;
      p.set(el.name, el.type === "datetime-local" ? new Date(el.value).toISOString() : el.value);
    }
    go(p);
  };
  $("#filters-clear").onclick = () => go(new URLSearchParams());
  const skip = +params.get("skip") || 0;
  $("#prev").onclick = () => go(withSkip(params, Math.max(0, skip - LIMIT)));
  $("#next").onclick = () => go(withSkip(params, skip + LIMIT));
  loadHistory(params, skip);
}

function withSkip(params, skip) { const p = new URLSearchParams(params); if (skip) p.set("skip", skip); else p.delete("skip"); return p; }

function go(p) {   // a new entry in the browser's history: back returns to the previous filters
  const q = p.toString();
  location.hash = "#/history" + (q ? "?" + q : "");
}

function impossible(p) {
  const from = p.get("from"), to = p.get("to");
  if (from && to && new Date(from) >= new Date(to)) return `No side can match: "from" (${when(from)}) is not before "to" (${when(to)}).`;
  return null;
}

async function loadHistory(params, skip) {
  clearTimeout(timer);
  const current = ask();   // a refresh in flight when other filters were applied must not draw its rows under them
  const table = $("#history");
  if (!table) return;                      // another view is shown: stop refreshing
  const p = new URLSearchParams();
  for (const k of FIELDS) if (params.get(k)) p.set(k, params.get(k));
  p.set("limit", LIMIT); p.set("skip", skip);
  const message = $("#history-message"), why = impossible(params);
  if (why) {
    $("#history tbody").replaceChildren(); message.textContent = why; message.hidden = false;
    table.dataset.total = "0"; $("#page-info").textContent = ""; return;
  }
  let data;
  try { data = await api("GET", "/api/history?" + p); } catch (e) {
    if (!current()) return;
    message.textContent = "Could not read the history: " + e.message; message.hidden = false;
    timer = setTimeout(() => loadHistory(params, skip), REFRESH_MS);
    return;
  }
  if (!current() || !$("#history")) return;
  const back = location.hash;
  $("#history tbody").replaceChildren(...data.sides.map((r) => historyRow(r, back)));
  const first = data.total ? data.skip + 1 : 0, last = data.skip + data.sides.length;
  $("#page-info").textContent = `${first}–${last} of ${data.total} · refreshed ${when(new Date().toISOString()).slice(11)}`;
  $("#prev").disabled = data.skip === 0;
  $("#next").disabled = last >= data.total;
  message.hidden = data.total > 0;
  if (!data.total) message.textContent = [...params.keys()].some((k) => k !== "sort" && k !== "order")
    ? "No side matches these filters. Clear them or widen the time range." : "No side stored yet.";
  table.dataset.total = data.total;
  timer = setTimeout(() => loadHistory(params, skip), REFRESH_MS);
}

export function moduleLink(r, back) {
  const q = new URLSearchParams();
  if (r.result_id) q.set(r.side, r.result_id);
  if (back) q.set("back", back);
  return "#/module/" + encodeURIComponent(r.module) + "?" + q;
}

export function thumb(r) {
  if (!r.thumbnail_id) return document.createTextNode("–");
  const img = document.createElement("img");
  img.className = "thumb"; img.loading = "lazy"; img.width = 48; img.height = 48;
  img.src = "/api/images/" + r.thumbnail_id; img.alt = `${r.module} ${r.side}`;
  return img;
}

export function verdictCell(td, r) {   // the word itself beside the colour
  td.textContent = r.is_anomalous ? "anomalous" : "good";
  td.className = r.is_anomalous ? "anomalous" : "good";
}

export function decisionText(r) {
  return r.decision ? `${r.decision} · ${r.decided_by || "?"}` + (r.categories && r.categories.length ? ` (${r.categories.join(", ")})` : "") : "–";
}

function historyRow(r, back) {
  const tr = document.createElement("tr");
  const td = () => { const c = document.createElement("td"); tr.append(c); return c; };
  td().textContent = when(r.processed_at);
  const a = document.createElement("a");
  a.href = moduleLink(r, back); a.textContent = r.module;
  td().append(a);
  td().textContent = r.side;
  verdictCell(td(), r);
  td().textContent = fmt(r.score);
  td().textContent = r.defects;
  td().textContent = `${r.verified} of ${r.tile_count}`;
  const d = td(); d.textContent = decisionText(r); if (r.decision) d.className = "decision " + r.decision;
  td().textContent = r.tag || "";
  td().textContent = r.model_version || r.model_id || "";
  td().append(thumb(r));
  return tr;
}
