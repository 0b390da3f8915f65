// Batches run on Slurm.
import { $, api, rows, when, toast } from "./core.js";

// ------------------------------------------------------------------ batches on Slurm
export async function batchesView(root) {
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
            when(b.created_at), b.created_by, b.error || ""];
  });
  $("#batches").dataset.ready = "1";
}
