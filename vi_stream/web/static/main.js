// vi_stream operator page: monitor, history, models, batches, module review. Plain JavaScript modules,
// no build step, no library; talks only to the daemon that served it (REST + Server-Sent Events).
import { $, loadSession, setupLogin, toast } from "./core.js";
import { setupHealth } from "./health.js";
import { connect, monitorView, redrawFrame } from "./live.js";
import { historyView } from "./history.js";
import { modelsView } from "./models.js";
import { batchesView } from "./batches.js";
import { moduleView } from "./module.js";
import { queueView } from "./queue.js";
import { reportView } from "./report.js";

// ------------------------------------------------------------------ routing
function route() {
  const root = $("#view"), hash = location.hash || "#/monitor";
  root.replaceChildren();
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  if (hash.startsWith("#/history")) historyView(root);
  else if (hash.startsWith("#/queue")) queueView(root);
  else if (hash.startsWith("#/report")) reportView(root);
  else if (hash.startsWith("#/models")) modelsView(root);
  else if (hash.startsWith("#/batches")) batchesView(root);
  else if (hash.startsWith("#/module/")) moduleView(root, decodeURIComponent(hash.slice("#/module/".length).split("?")[0]));
  else monitorView(root);
}

setupLogin();
setupHealth();
loadSession().catch((e) => toast(e.message));
connect();
window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", () => { if (!document.hidden) redrawFrame(); });
route();
