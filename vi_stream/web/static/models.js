// Models: registered versions, aliases and their log.
import { $, act, api, fmt, kv, rows, toast, when } from "./core.js";

// ------------------------------------------------------------------ models: versions, aliases, their log
const reg = { aliases: {} };

export function modelsView(root) {
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

async function loadModels() {
  let models, aliases;
  try { [models, aliases] = await Promise.all([api("GET", "/api/models"), api("GET", "/api/aliases")]); }
  catch (e) { if ($("#aliases")) $("#aliases").textContent = e.message; return; }
  reg.aliases = aliases.aliases;
  const shown = {};
  for (const [a, t] of Object.entries(aliases.aliases)) shown[a] = `${t.name}@${t.version} (since ${when(t.set_at)})`;
  kv("#aliases", Object.keys(shown).length ? shown : { none: "promote a version below" });
  rows("#models", models.models, (d) => {
    const b = document.createElement("button");
    b.textContent = "Promote"; b.className = "needs-auth"; b.dataset.ref = `${d.name}@${d.version}`;
    b.onclick = () => promote(d);
    return [`${d.name}@${d.version}`, d.sha256.slice(0, 12), d.metadata.backbone, d.metadata.tile,
            fmt(d.metadata.threshold), `${when(d.registered_at)} by ${d.registered_by}`, gateText(d.gate),
            d.aliases.join(", "), b];
  });
  rows("#alias-log", aliases.changes, (c) => [when(c.at), c.alias, c.from || "–", c.to, c.action, c.by, c.reason]);
  $("#models").dataset.ready = "1";
}
