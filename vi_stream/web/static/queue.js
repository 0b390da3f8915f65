// The review queue: anomalous sides without a decision, oldest first; each opens on the acquisition to decide.
import { $, api, fmt, latest, when } from "./core.js";
import { decisionText, moduleLink, thumb, verdictCell } from "./history.js";

let timer = null;
const ask = latest();   // the latest queue asked for (loadQueue)

export function queueView(root) {
  root.append($("#t-queue").content.cloneNode(true));
  loadQueue();
}

async function loadQueue() {
  clearTimeout(timer);
  if (!$("#queue")) return;
  // the latest list asked for: a request in flight when the operator left and came back (or the timer fired) may
  // answer after a newer one, and would draw a side decided since back into the queue
  const current = ask();
  let data;
  try { data = await api("GET", "/api/history?verdict=anomalous&decision=none&sort=processed_at&order=asc&limit=100"); }
  catch (e) {
    if (!current() || !$("#queue")) return;
    $("#queue-message").textContent = "Could not read the queue: " + e.message; $("#queue-message").hidden = false;
    timer = setTimeout(loadQueue, 5000);   // tried again, as the history is: a daemon restarting answers soon
    return;
  }
  if (!current() || !$("#queue")) return;
  $("#queue tbody").replaceChildren(...data.sides.map((r) => {
    const tr = document.createElement("tr");
    const td = () => { const c = document.createElement("td"); tr.append(c); return c; };
    td().append(thumb(r));
    td().textContent = when(r.processed_at);
    const a = document.createElement("a");
    a.href = moduleLink(r, "#/queue"); a.textContent = `${r.module} ${r.side}`;
    td().append(a);
    verdictCell(td(), r);
    td().textContent = fmt(r.score);
    td().textContent = r.defects;
    td().textContent = `${r.verified} of ${r.tile_count}`;
    td().textContent = decisionText(r);
    return tr;
  }));
  $("#queue-count").textContent = data.total ? `${data.total} to review, oldest first` + (data.total > data.sides.length ? ` (first ${data.sides.length} shown)` : "") : "";
  $("#queue-message").hidden = data.total > 0;
  $("#queue-message").textContent = "Nothing to review: every anomalous side has a decision.";
  $("#queue").dataset.total = data.total;
  timer = setTimeout(loadQueue, 5000);
}
