// Batches run on Slurm: the list, and one batch's record as tables (its fields, its tasks as seen, log tails).
import { $, api, kv, latest, rows, toast, when } from "./core.js";

// ------------------------------------------------------------------ batches on Slurm
const ask = latest();   // the latest batch clicked: an earlier one's record that comes later is dropped

export async function batchesView(root) {
  root.append($("#t-batches").content.cloneNode(true));
  let data;
  try { data = await api("GET", "/api/batches"); } catch (e) { toast(e.message); return; }
  rows("#batches", data.batches, (b) => {
    const a = document.createElement("a");
    a.href = "#/batches"; a.textContent = b.id;
    a.onclick = async (ev) => {
      ev.preventDefault();
      const current = ask();
      try { const r = await api("GET", "/api/batches/" + encodeURIComponent(b.id)); if (current()) showBatch(r.batch); }
      catch (e) { if (current()) toast(e.message); }
    };
    return [a, b.state, b.inputs.length, b.progress || "", b.stored ?? "", b.jobs.length,
            when(b.created_at), b.created_by, b.error || ""];
  });
  $("#batches").dataset.ready = "1";
}

function showBatch(b) {
  $("#batch-title").textContent = `Batch ${b.id}`;
  const jobs = (b.jobs || []).map((j) => `${j.job} (tasks ${(j.tasks || []).join(", ")})`).join("; ");
  kv("#batch-fields", { state: b.state, progress: b.progress || "–", "results stored": b.stored ?? "–",
                        created: `${when(b.created_at)} by ${b.created_by || "–"}`,
                        inputs: (b.inputs || []).join(", ") || "–", jobs: jobs || "–", error: b.error || "–",
                        ...Object.fromEntries(Object.entries(b).filter(([k, v]) => !["id", "state", "progress", "stored",
                          "created_at", "created_by", "inputs", "jobs", "error", "tasks", "log_tail"].includes(k) &&
                          (typeof v !== "object" || v === null)).map(([k, v]) => [k.replace(/_/g, " "), v])) });
  const tails = b.log_tail || {};
  const tasks = Object.entries(b.tasks || {}).sort((x, y) => +x[0] - +y[0]);
  const tailed = new Set(Object.keys(tails).map((k) => k.split("/")[0]));
  for (const t of tailed) if (!(b.tasks || {})[t]) tasks.push([t, {}]);
  rows("#batch-tasks", tasks, ([t, s]) => {
    const pre = document.createElement("pre");
    pre.className = "tail";
    pre.textContent = Object.entries(tails).filter(([k]) => k.split("/")[0] === t)
      .map(([k, lines]) => `job ${k.split("/")[1]}:\n${lines.join("\n")}`).join("\n");
    return [t, s.state || "–", s.attempts ?? "–", s.job ?? "–", (s.seen || []).join(" → ") || "–", pre];
  });
  $("#batch-detail").hidden = false;
}
