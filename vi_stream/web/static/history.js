// History: stored sides, filtered and paged.
import { $, api, fmt, toLocal, toast } from "./core.js";

// ------------------------------------------------------------------ history view
const hist = { params: new URLSearchParams(), skip: 0, limit: 50 };

export function historyView(root) {
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
