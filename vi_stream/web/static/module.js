// A module's page: both sides together, each on the acquisition asked for (the newest by default; every
// acquisition is listed and reachable), with a zoomable full-resolution view (defect boxes and their list),
// tiles as buttons (keyboard), the verified state in words, the operator's decision, and a way back.
import { $, act, api, fmt, hashParams, image, latest, when } from "./core.js";
import { editor, setupEditor } from "./editor.js";

export const review = { module: null, sides: {}, newer: {}, side: null, tile: 0, layer: "original" };
const VERDICTS = ["pass", "fail", "rework"];
const CATEGORIES = ["scratch", "particle", "stain", "pad damage", "corrosion", "misalignment", "other"];

const ask = latest();   // the latest module page asked for: an earlier one's answers that come later are dropped

export async function moduleView(root, name) {
  const current = ask();
  root.append($("#t-module").content.cloneNode(true));
  const params = hashParams();
  $("#module-name").textContent = name;
  const back = params.get("back");
  $("#module-back").href = back && back.startsWith("#/") ? back : "#/history";
  $("#module-back").textContent = back && back.startsWith("#/queue") ? "‹ back to the review queue" : "‹ back to the list";
  $("#layer").value = review.layer;
  $("#layer").onchange = () => { review.layer = $("#layer").value; drawSides(); if (editor.box) editor.load(); };
  $("#mask-opacity").oninput = () => { for (const v of Object.values(viewers)) v.draw(); editor.paint(); };
  setupEditor();
  let module;
  try { module = (await api("GET", "/api/modules/" + encodeURIComponent(name))).module; }
  catch (e) { if (current()) $("#sides").textContent = e.message; return; }
  const sides = {}, newer = {};   // gathered apart: a later page (back button, another acquisition) may be drawn meanwhile
  for (const s of ["left", "right"]) {
    const want = params.get(s);
    if (want && module[s] && want !== module[s].result_id) {
      try {
        const a = await api("GET", `/api/modules/${encodeURIComponent(name)}/${s}/results/${encodeURIComponent(want)}`);
        sides[s] = a.side; newer[s] = a.newer;
      } catch (e) { sides[s] = module[s]; }
    } else sides[s] = module[s];
  }
  if (!current()) return;
  Object.assign(review, { module, sides, newer });
  drawSides();
}

// A save's answer (a decision, a tile) is kept only while the acquisition saved is still the one shown: the
// operator may have opened another (or another module) before it landed, and that page is not drawn over.
export function keepSaved(name, r) {
  const shown = review.sides[name];
  if (!shown || shown.result_id !== r.side.result_id) return false;
  review.sides[name] = r.side; review.newer[name] = r.newer;
  if (review.module[name] && review.module[name].result_id === r.side.result_id) review.module[name] = r.side;
  return true;
}

export function link(sideName, resultId) {   // this page on another acquisition of one side
  const p = hashParams();
  p.set(sideName, resultId);
  return "#/module/" + encodeURIComponent(review.module.name) + "?" + p;
}

const viewers = {};

// The sides are drawn apart and swapped in at once: until then the old ones stay, with the operator's field (the
// decision's comment, say) and its focus, or the keys typed meanwhile would land on <body>, where the editor takes
// s, v, n and p as its shortcuts. A redraw started while another is under way replaces it: the earlier one stops
// at its next await, or both would swap theirs in.
let draws = 0;

export async function drawSides() {
  const m = review.module, holder = $("#sides");
  if (!m || !holder) return;
  const drawing = ++draws, stale = () => drawing !== draws || !holder.isConnected;
  for (const b of holder.children) delete b.dataset.ready;   // on the page, not yet the new drawing
  const boxes = [], drawn = {};
  for (const name of ["left", "right"]) {
    const box = document.createElement("section");
    box.className = "side"; box.id = "side-" + name;
    boxes.push(box);
    const s = review.sides[name];
    if (!s) {
      box.classList.add("missing");
      box.innerHTML = `<h3>${name}</h3><p class="notice">No ${name} side is stored for this module yet.</p>`;
      box.dataset.ready = "1";
      continue;
    }
    drawn[name] = { box, s, viewer: await drawSide(box, name, s, stale) };
    if (stale()) return;   // redrawn (or another page shown) meanwhile
  }
  // The decision forms are made last, from the drafts: the operator may have typed into the old ones until now.
  for (const [name, d] of Object.entries(drawn)) { d.box.append(decisionForm(name, d.s)); viewers[name] = d.viewer; }
  const at = focused(holder);
  holder.replaceChildren(...boxes);
  refocus(at);   // in the same step as the swap: no key can come in between
}

// Where the operator is on the sides (a field, a tile's button), to be put back there in the new drawing. The
// same acquisition is drawn the same each time, so the n-th <textarea> (<input>, <button>…) of a side is the same.
function focused(holder) {
  const a = document.activeElement, box = a && holder.contains(a) ? a.closest(".side") : null;
  if (!box) return null;
  return { side: box.id, tag: a.localName, n: [...box.querySelectorAll(a.localName)].indexOf(a),
           caret: typeof a.selectionStart === "number" ? [a.selectionStart, a.selectionEnd, a.selectionDirection] : null };
}

function refocus(at) {
  const e = at && document.getElementById(at.side)?.querySelectorAll(at.tag)[at.n];
  if (!e) return;
  e.focus({ preventScroll: true });
  if (at.caret) e.setSelectionRange(...at.caret);
}

function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...kids);
  return e;
}

async function drawSide(box, name, s, stale) {   // all but the decision form, which drawSides adds at the swap
  const verified = s.verified_masks.filter(Boolean).length;
  box.append(el("h3", { textContent: `${name}: ${s.is_anomalous ? "⚠ anomalous" : "✓ good"} · score ${fmt(s.score)} · ` +
    `${verified} of ${s.tile_count} tiles verified` }));
  box.append(el("p", { className: "facts", textContent: `acquired ${when(s.acquired_at)} · processed ${when(s.processed_at)} · ` +
    `model ${s.model_version || s.model_id}` + (s.threshold ? `, threshold ${fmt(s.threshold)}` : "") }));
  if (review.newer[name]) {
    const n = review.newer[name];
    box.append(el("p", { className: "notice newer", role: "status" },
      `This is an older acquisition. A newer one of this side exists (acquired ${when(n.acquired_at)}): `,
      el("a", { href: link(name, n.result_id), textContent: "open the newer acquisition" }), "."));
  }
  box.append(await acquisitionsList(name, s));
  if (stale()) return null;   // a newer drawing replaced this one
  const v = viewer(name, s);
  box.append(v.root);
  box.append(defectList(name, s));
  box.append(tileButtons(name, s));
  await v.ready;
  box.dataset.ready = "1";
  return v;
}

async function acquisitionsList(name, s) {
  const sel = el("select", { id: "acq-" + name });
  const label = el("label", {}, "acquisition ", sel);
  let rows = [];
  try { rows = (await api("GET", `/api/modules/${encodeURIComponent(review.module.name)}/${name}/results?limit=50`)).results; }
  catch (e) { rows = []; }
  const shown = review.module[name] && review.module[name].result_id;
  for (const r of rows.length ? rows : [s]) {
    const tags = [r.result_id === shown ? "shown" : "", r.decision ? "decided: " + r.decision : ""].filter(Boolean);
    sel.append(el("option", { value: r.result_id, textContent: `${when(r.acquired_at)} · ${r.is_anomalous ? "anomalous" : "good"}` +
      (tags.length ? ` (${tags.join(", ")})` : ""), selected: r.result_id === s.result_id }));
  }
  sel.onchange = () => { location.hash = link(name, sel.value); };
  return el("div", { className: "row" }, label, el("span", { className: "muted", textContent: `${rows.length} kept` }));
}

function viewer(name, s) {
  const [H, W] = s.image_shape;
  const canvas = el("canvas", { width: 640, height: Math.round(640 * Math.min(1.2, H / W)), tabIndex: 0, id: "view-" + name });
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `${name} side, ${review.layer}, ${W}×${H} px; + and - zoom, arrow keys pan`);
  const zoomText = el("span", { className: "muted", id: "zoom-" + name });
  const btn = (t, title, f) => { const b = el("button", { type: "button", textContent: t, title }); b.onclick = f; return b; };
  const v = { root: null, k: 1, x: 0, y: 0, full: null, mask: null, canvas };
  const fit = () => { v.k = Math.min(canvas.width / W, canvas.height / H); v.x = 0; v.y = 0; };
  const zoom = (f, cx = canvas.width / 2, cy = canvas.height / 2) => {
    const k = Math.max(0.05, Math.min(16, v.k * f));
    v.x = cx - (cx - v.x) * k / v.k; v.y = cy - (cy - v.y) * k / v.k; v.k = k; v.draw();
  };
  v.focus = (bx, by, bw, bh) => {
    v.k = Math.min(4, Math.min(canvas.width / (bw * 3), canvas.height / (bh * 3)));
    v.x = canvas.width / 2 - (bx + bw / 2) * v.k; v.y = canvas.height / 2 - (by + bh / 2) * v.k; v.draw();
  };
  v.draw = () => {
    if (!v.full) return;
    const g = canvas.getContext("2d");
    g.setTransform(1, 0, 0, 1, 0, 0); g.fillStyle = "#000"; g.fillRect(0, 0, canvas.width, canvas.height);
    g.imageSmoothingEnabled = v.k < 1;
    g.setTransform(v.k, 0, 0, v.k, v.x, v.y);
    g.drawImage(v.full, 0, 0);
    if (v.mask) { g.globalAlpha = $("#mask-opacity").value / 100; g.drawImage(v.mask, 0, 0); g.globalAlpha = 1; }
    g.lineWidth = 1 / v.k;
    s.tiles.forEach(([x, y, w, h], i) => {
      g.strokeStyle = s.verified_masks[i] ? "#1f7a3d" : "rgba(255,255,255,.5)";
      g.lineWidth = (s.verified_masks[i] ? 3 : 1) / v.k;
      g.strokeRect(x, y, w, h);
    });
    g.strokeStyle = "#ffd400"; g.lineWidth = 2 / v.k; g.font = `${14 / v.k}px sans-serif`; g.fillStyle = "#ffd400";
    (s.defects || []).forEach((d, i) => { const [x, y, w, h] = d.bbox; g.strokeRect(x, y, w, h); g.fillText(String(i + 1), x, y - 3 / v.k); });
    zoomText.textContent = `${Math.round(v.k * 100)}%`;
    canvas.dataset.zoom = v.k.toFixed(3);
  };
  let drag = null, moved = 0;
  canvas.onmousedown = (ev) => { drag = [ev.clientX - v.x, ev.clientY - v.y]; moved = 0; };
  canvas.onmousemove = (ev) => {
    if (!drag) return;
    moved += Math.abs(ev.movementX) + Math.abs(ev.movementY);
    v.x = ev.clientX - drag[0]; v.y = ev.clientY - drag[1]; v.draw();
  };
  canvas.onmouseleave = () => { drag = null; };
  canvas.onmouseup = (ev) => {   // a click, not a drag: open the tile under the pointer
    const was = drag; drag = null;
    if (!was || moved > 3) return;
    const r = canvas.getBoundingClientRect();
    const px = ((ev.clientX - r.left) * canvas.width / r.width - v.x) / v.k, py = ((ev.clientY - r.top) * canvas.height / r.height - v.y) / v.k;
    const i = s.tiles.findIndex(([x, y, w, h]) => px >= x && px < x + w && py >= y && py < y + h);
    if (i >= 0) editor.open(name, i);
  };
  canvas.onwheel = (ev) => { ev.preventDefault(); const r = canvas.getBoundingClientRect();
    zoom(ev.deltaY < 0 ? 1.25 : 0.8, (ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height); };
  canvas.onkeydown = (ev) => {
    const step = 60, k = ev.key;
    if (k === "+" || k === "=") zoom(1.25); else if (k === "-") zoom(0.8);
    else if (k === "0") { fit(); v.draw(); } else if (k === "1") zoom(1 / v.k);
    else if (k === "ArrowLeft") { v.x += step; v.draw(); } else if (k === "ArrowRight") { v.x -= step; v.draw(); }
    else if (k === "ArrowUp") { v.y += step; v.draw(); } else if (k === "ArrowDown") { v.y -= step; v.draw(); }
    else return;
    ev.preventDefault(); ev.stopPropagation();
  };
  v.root = el("div", { className: "viewer" },
    el("div", { className: "row" }, btn("−", "zoom out (-)", () => zoom(0.8)), btn("+", "zoom in (+)", () => zoom(1.25)),
       btn("Fit", "whole image (0)", () => { fit(); v.draw(); }), btn("1:1", "full resolution (1)", () => zoom(1 / v.k)), zoomText,
       el("span", { className: "muted", textContent: "drag or arrow keys to pan, wheel or +/- to zoom" })), canvas);
  fit();
  v.ready = Promise.all([image(s[review.layer].full.src_id), image(s.corrected_mask.full.src_id)]).then(([img, mask]) => {
    v.full = img; v.mask = tint(mask, [255, 45, 85]);
    canvas.dataset.src = s[review.layer].full.src_id;
    v.draw();
  });
  return v;
}

function defectList(name, s) {
  const defects = s.defects || [];
  const list = el("ol", { className: "defects", id: "defects-" + name });
  defects.forEach((d, i) => {
    const [x, y, w, h] = d.bbox;
    const b = el("button", { type: "button", textContent: `defect ${i + 1}: ${w}×${h} px at (${x}, ${y})` +
      (d.peak != null ? `, peak ${fmt(d.peak)}` : "") });
    b.onclick = () => viewers[name].focus(x, y, w, h);
    list.append(el("li", {}, b));
  });
  return el("div", {}, el("h4", { textContent: defects.length ? `Defects (${defects.length})` : "Defects: none found by the model" }), list);
}

function tileButtons(name, s) {
  const cols = new Set(s.tiles.map((t) => t[0])).size;
  const grid = el("div", { className: "tiles", id: "tiles-" + name });
  grid.setAttribute("role", "group"); grid.setAttribute("aria-label", `${name} side's tiles`);
  grid.style.gridTemplateColumns = `repeat(${cols}, minmax(4.5em, 1fr))`;
  s.tiles.forEach((_, i) => {
    const ok = s.verified_masks[i], fixed = (s.corrected_tiles || []).includes(i);
    const b = el("button", { type: "button", className: "tile" + (ok ? " verified" : ""),
      textContent: `${i + 1}` + (ok ? " ✓ verified" : "") + (fixed ? " · corrected" : "") });
    b.dataset.tile = i;
    b.setAttribute("aria-label", `tile ${i + 1} of ${s.tile_count}, ${ok ? "verified" : "not verified"}${fixed ? ", corrected" : ""}: open the editor`);
    b.onclick = () => editor.open(name, i);
    grid.append(b);
  });
  const verified = s.verified_masks.filter(Boolean).length;
  return el("div", {}, el("h4", { textContent: `Tiles: ${verified} of ${s.tile_count} verified` +
    (verified === s.tile_count ? " — every tile verified" : "") }), grid);
}

// What the operator has put in a decision form and not yet saved, by acquisition: a redraw (a tile's save
// landing, the layer) builds the form again and must not wipe it.
const drafts = new Map();

function decisionForm(name, s) {
  const d = s.decision;
  const form = el("form", { className: "decision-form", id: "decide-" + name });
  const status = el("p", { className: "decision-status" + (d ? " " + d.verdict : ""), id: "decision-" + name,
    textContent: d ? `Decision: ${d.verdict} by ${d.by} at ${when(d.at)}` + (d.categories.length ? ` · ${d.categories.join(", ")}` : "") +
      (d.comment ? ` · “${d.comment}”` : "") : "No decision yet." });
  const verdicts = el("fieldset", {}, el("legend", { textContent: "Decision" }), ...VERDICTS.map((v) =>
    el("label", {}, el("input", { type: "radio", name: "verdict", value: v, checked: d && d.verdict === v, required: true }), " " + v)));
  const cats = el("fieldset", {}, el("legend", { textContent: "Defect categories" }), ...CATEGORIES.map((c) =>
    el("label", {}, el("input", { type: "checkbox", name: "category", value: c, checked: !!(d && d.categories.includes(c)) }), " " + c)));
  const comment = el("textarea", { name: "comment", rows: 2, cols: 40, value: d ? d.comment : "" });
  const save = el("button", { className: "needs-auth", textContent: "Save decision" });
  form.append(status, verdicts, cats, el("label", {}, "comment ", comment), save);
  const draft = drafts.get(s.result_id);
  if (draft) {
    for (const r of form.querySelectorAll("input[name=verdict]")) r.checked = r.value === draft.verdict;
    for (const c of form.querySelectorAll("input[name=category]")) c.checked = draft.categories.includes(c.value);
    comment.value = draft.comment;
  }
  const values = () => ({ verdict: form.elements.verdict.value, comment: comment.value,
                          categories: [...form.querySelectorAll("input[name=category]:checked")].map((c) => c.value) });
  form.oninput = form.onchange = () => drafts.set(s.result_id, values());
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const body = { ...values(), result_id: s.result_id };
    const r = await act(() => api("POST", `/api/modules/${encodeURIComponent(review.module.name)}/${name}/decision`, body),
                        "Decision saved").catch(() => null);
    if (r) drafts.delete(s.result_id);
    if (r && keepSaved(name, r)) drawSides();
  };
  return form;
}

function tint(img, rgb) {   // a 0/255 mask image as colour where it is set, transparent elsewhere
  const c = document.createElement("canvas");
  c.width = img.width; c.height = img.height;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < d.data.length; i += 4) {
    const on = d.data[i] > 127;
    d.data[i] = rgb[0]; d.data[i + 1] = rgb[1]; d.data[i + 2] = rgb[2]; d.data[i + 3] = on ? 255 : 0;
  }
  g.putImageData(d, 0, 0);
  return c;
}
