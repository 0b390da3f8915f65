// The shift report: every result processed in a time range with its verdict and decision; printable, and as CSV.
import { $, api, fmt, hashParams, latest, toLocal, when } from "./core.js";

export function reportView(root) {
  root.append($("#t-report").content.cloneNode(true));
  const p = hashParams(), form = $("#report-form");
  const to = p.get("to") || new Date().toISOString();
  const from = p.get("from") || new Date(new Date(to).getTime() - 8 * 3600e3).toISOString();
  form.elements.from.value = toLocal(from); form.elements.to.value = toLocal(to);
  $("#report-print").onclick = () => window.print();
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams({ from: new Date(form.elements.from.value).toISOString(),
                                    to: new Date(form.elements.to.value).toISOString() });
    location.hash = "#/report?" + q;
  };
  load(from, to);
}

const ask = latest();   // the latest range asked for: an earlier answer that comes later is dropped

async function load(from, to) {
  const current = ask();
  const q = new URLSearchParams({ from, to });
  $("#report-csv").href = "/api/report.csv?" + q;
  $("#report-range").textContent = `${when(from)} to ${when(to)}`;
  let data;
  try { data = await api("GET", "/api/report?" + q); }
  catch (e) { if (!current()) return; $("#report-message").textContent = e.message; $("#report-message").hidden = false; return; }
  if (!current() || !$("#report")) return;   // another range was asked meanwhile (or another view shown)
  const rows = data.rows, count = (f) => rows.filter(f).length;
  $("#report-summary").textContent = `${rows.length} results: ${count((r) => r.verdict === "anomalous")} anomalous, ` +
    `${count((r) => r.decision === "pass")} passed, ${count((r) => r.decision === "fail")} failed, ` +
    `${count((r) => r.decision === "rework")} to rework, ${count((r) => r.verdict === "anomalous" && !r.decision)} anomalous without a decision` +
    (data.truncated ? " (cut short: choose a shorter range)" : "");
  $("#report tbody").replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    for (const v of [when(r.processed_at), r.module, r.side, r.verdict, fmt(r.score), r.defects,
                     `${r.tiles_verified} of ${r.tile_count}`, r.decision || "–", r.categories, r.comment, r.decided_by]) {
      const td = document.createElement("td"); td.textContent = v ?? ""; tr.append(td);
    }
    return tr;
  }));
  $("#report-message").hidden = rows.length > 0;
  $("#report-message").textContent = "No result was processed in this time range.";
  $("#report").dataset.rows = rows.length;
}
