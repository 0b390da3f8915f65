// Models: registered versions, aliases and their log; register, the promotion gate, retraining and shadow mode.
import { $, act, api, fmt, kv, rows, when, toast } from "./core.js";

// ------------------------------------------------------------------ models: versions, aliases, their log
const reg = { aliases: {}, changes: [], extra: new Set(), adding: false };   // extra: new aliases added on this page, not yet set
                                                                          // adding: the operator chose "new alias…"
const NEW = "\u0000new";
const WORD = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function modelsView(root) {
  root.append($("#t-models").content.cloneNode(true));
  reg.adding = false;
  $("#alias-name").onchange = () => {
    const add = $("#alias-name").value === NEW;
    reg.adding = add;
    $("#alias-new-box").hidden = !add;
    if (add) $("#alias-new").focus(); else showRollback();
  };
  $("#alias-new-add").onclick = addAlias;
  $("#alias-new").onkeydown = (ev) => { if (ev.key === "Enter") { ev.preventDefault(); addAlias(); } };
  $("#rollback").onclick = rollback;
  $("#register-form").onsubmit = register;
  $("#gate-freeze").onclick = () => act(() => api("POST", "/api/gate"), "Gate set frozen").then(loadOps, () => loadOps());
  $("#ops-refresh").onclick = loadOps;
  loadModels();
  loadOps();
}

function alias() { const a = $("#alias-name").value; return a === NEW ? "" : a; }

function addAlias() {   // a new alias only by this explicit, checked step
  const name = $("#alias-new").value.trim();
  if (!WORD.test(name)) { toast("An alias is a word: letters, digits, '_', '.' or '-', starting with a letter or digit"); return; }
  if (reg.aliases[name] || reg.extra.has(name)) { toast(`Alias ${name} exists already: chosen`); }
  reg.extra.add(name);
  reg.adding = false;
  fillAliases(name);
  $("#alias-new").value = ""; $("#alias-new-box").hidden = true;
  toast(`New alias ${name}: promote a version to create it`, true);
}

function fillAliases(choose) {   // a list refreshed after the operator chose "new alias…" keeps that choice
  const sel = $("#alias-name"), names = [...new Set([...Object.keys(reg.aliases), ...reg.extra])].sort();
  const keep = choose ?? (reg.adding ? NEW : sel.value && sel.value !== NEW ? sel.value
                          : names.includes("production") ? "production" : names[0]);
  sel.replaceChildren(...names.map((n) => new Option(reg.aliases[n] ? `${n} → ${reg.aliases[n].name}@${reg.aliases[n].version}`
                                                                   : `${n} (new: points nowhere yet)`, n)),
                      new Option("new alias…", NEW));
  sel.value = keep && names.includes(keep) ? keep : NEW;
  $("#alias-new-box").hidden = sel.value !== NEW;
  showRollback();
}

function rollbackTarget(a) {   // as the daemon decides: the version before the alias's latest promotion
  const last = reg.changes.find((c) => c.alias === a && c.action === "promote");
  const t = reg.aliases[a], now = t ? `${t.name}@${t.version}` : "";
  return last && last.from && last.from !== now ? { to: last.from, from: now } : null;
}

function showRollback() {
  const b = $("#rollback"), r = rollbackTarget(alias());
  b.textContent = r ? `Roll back to ${r.to}` : "Roll back";
  b.disabled = !r;
  b.title = r ? `${alias()}: ${r.from} → ${r.to}` : "nothing to roll back to: the alias has no earlier promotion";
}

export function confirmDialog(text) {
  return new Promise((resolve) => {
    const d = $("#confirm");
    $("#confirm-text").textContent = text;
    d.onclose = () => resolve(d.returnValue === "yes");
    d.returnValue = "";
    d.showModal();
    $("#confirm-no").focus();
  });
}

async function rollback() {
  const a = alias(), reason = $("#alias-reason").value.trim(), r = rollbackTarget(a);
  if (!r) { toast("Nothing to roll back to"); return; }
  if (!reason) { toast("Give a reason: it is kept in the log"); return; }
  if (!(await confirmDialog(`Roll ${a} back from ${r.from} to ${r.to}? Daemons following ${a} switch at once.`))) return;
  act(() => api("POST", `/api/aliases/${encodeURIComponent(a)}/rollback`, { reason, expected: r.from }),
      `${a} rolled back to ${r.to}`).then(loadModels, () => loadModels());
}

function promote(doc) {
  const a = alias(), reason = $("#alias-reason").value.trim();
  if (!a) { toast("Choose an alias first (or add a new one)"); return; }
  if (!reason) { toast("Give a reason: it is kept in the log"); return; }
  const t = reg.aliases[a], expected = t ? `${t.name}@${t.version}` : "";
  act(() => api("POST", `/api/aliases/${encodeURIComponent(a)}`,
                { name: doc.name, version: doc.version, reason, expected, force: $("#alias-force").checked }),
      `${a} -> ${doc.name}@${doc.version}`).then(loadModels, () => loadModels());
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
  reg.aliases = aliases.aliases; reg.changes = aliases.changes;
  for (const a of Object.keys(reg.aliases)) reg.extra.delete(a);
  const shown = {};
  for (const [a, t] of Object.entries(aliases.aliases)) shown[a] = `${t.name}@${t.version} (since ${when(t.set_at)})`;
  kv("#aliases", Object.keys(shown).length ? shown : { none: "promote a version below" });
  fillAliases();
  rows("#models", models.models, (d) => {
    const b = document.createElement("button");
    b.textContent = "Promote"; b.className = "needs-auth"; b.dataset.ref = `${d.name}@${d.version}`;
    b.onclick = () => promote(d);
    return [`${d.name}@${d.version}`, d.metadata.model_id || "–", d.sha256.slice(0, 12), d.metadata.backbone, d.metadata.tile,
            fmt(d.metadata.threshold), `${when(d.registered_at)} by ${d.registered_by}`, gateText(d.gate),
            d.aliases.join(", "), b];
  });
  rows("#alias-log", aliases.changes, (c) => [when(c.at), c.alias, c.from || "–", c.to, c.action, c.by, c.reason]);
  $("#models").dataset.ready = "1";
}

// ------------------------------------------------------------------ register, gate, retrain, shadow
async function register(ev) {
  ev.preventDefault();
  const file = $("#register-file").files[0], name = $("#register-name").value.trim();
  if (!file || !WORD.test(name)) { toast("Choose a model file (.npz) and a name (a word)"); return; }
  const body = new Uint8Array(await file.arrayBuffer());
  const r = await act(() => api("POST", `/api/models?name=${encodeURIComponent(name)}`, body, "application/octet-stream"))
    .catch(() => null);
  if (r) { toast(`Registered ${r.model.name}@${r.model.version}`, true); showOp("register", "done", `${r.model.name}@${r.model.version}, ` +
    `hash ${r.model.sha256.slice(0, 12)}`); loadModels(); }
}

const ops = {};
function showOp(what, state, details) { ops[what] = [what, state, details]; drawOps(); }
function drawOps() { if ($("#ops")) rows("#ops", Object.values(ops), (r) => r); }

async function loadOps() {
  const get = (path) => api("GET", path).then((r) => ({ ok: r }), (e) => ({ err: e }));
  const [gate, retrain, shadow] = await Promise.all([get("/api/gate"), get("/api/retrain"), get("/api/shadow")]);
  if (gate.ok) { const g = gate.ok.gate; showOp("gate", "frozen", `${g.id}: ${g.defect_tiles} defect and ${g.good_tiles} good tiles, ` +
    `${when(g.created_at)} by ${g.created_by}`); }
  else showOp("gate", gate.err.status === 404 ? "none yet" : "unknown", gate.err.message);
  if (retrain.ok) { const r = retrain.ok.retrain || retrain.ok.job || retrain.ok;
    showOp("retrain", r.state || "–", Object.entries(r).filter(([k]) => !["state", "status"].includes(k)).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ") || "–"); }
  else showOp("retrain", "unknown", retrain.err.message);
  if (shadow.ok) { const s = shadow.ok.shadow;
    showOp("shadow", s.candidate ? `comparing ${s.candidate}` : "waiting for its alias", `${s.agreed} of ${s.compared} agree` +
      (s.agreement != null ? ` (${fmt(100 * s.agreement)}%)` : "") + `, only production anomalous ${s.only_production_anomalous}, ` +
      `only candidate ${s.only_candidate_anomalous}`); }
  else showOp("shadow", shadow.err.status === 409 ? "off" : "unknown", shadow.err.message);
}
