// A module's review page: its sides with their layers; a click on a tile opens the editor.
import { $, api, fmt, image } from "./core.js";
import { editor, setupEditor } from "./editor.js";

// ------------------------------------------------------------------ module review
export const review = { module: null, side: null, tile: 0, layer: "original" };

export async function moduleView(root, name) {
  root.append($("#t-module").content.cloneNode(true));
  $("#module-name").textContent = name;
  $("#layer").value = review.layer;
  $("#layer").onchange = () => { review.layer = $("#layer").value; drawSides(); if (editor.box) editor.load(); };
  $("#mask-opacity").oninput = () => { drawSides(); editor.paint(); };
  setupEditor();
  await loadModule(name);
}

async function loadModule(name) {
  try { review.module = (await api("GET", "/api/modules/" + encodeURIComponent(name))).module; }
  catch (e) { $("#sides").textContent = e.message; return; }
  drawSides();
}

function sideInfo(s) {
  const verified = s.verified_masks.filter(Boolean).length;
  return `${s.is_anomalous ? "anomalous" : "good"} · score ${fmt(s.score)} · ${verified} of ${s.tile_count} tiles verified` +
    ` · model ${s.model_version || s.model_id}` + (s.threshold ? `, threshold ${fmt(s.threshold)}` : "");
}

export async function drawSides() {
  const m = review.module, holder = $("#sides");
  if (!m || !holder) return;
  holder.replaceChildren();
  for (const name of ["left", "right"]) {
    const s = m[name];
    if (!s) continue;
    const box = document.createElement("div");
    box.className = "side"; box.id = "side-" + name;
    const h = document.createElement("h3");
    h.textContent = `${name}: ${sideInfo(s)}`;
    const c = document.createElement("canvas");
    box.append(h, c);
    holder.append(box);
    const img = await image(s[review.layer].thumbnail.src_id);
    const mask = await image(s.corrected_mask.thumbnail.src_id);
    const k = img.width / s.image_shape[1];
    c.width = img.width; c.height = img.height;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    g.globalAlpha = $("#mask-opacity").value / 100; g.drawImage(tint(mask, [255, 45, 85]), 0, 0); g.globalAlpha = 1;
    s.tiles.forEach(([x, y, w, hh], i) => {
      g.strokeStyle = s.verified_masks[i] ? "#2e9d4f" : "rgba(255,255,255,.6)";
      g.lineWidth = s.verified_masks[i] ? 2 : 1;
      g.strokeRect(x * k + .5, y * k + .5, w * k - 1, hh * k - 1);
      if (s.verified_masks[i]) { g.fillStyle = "#2e9d4f"; g.fillText("✓", x * k + 3, y * k + 11); }
    });
    c.onclick = (ev) => {
      const r = c.getBoundingClientRect();
      const px = (ev.clientX - r.left) * c.width / r.width / k, py = (ev.clientY - r.top) * c.height / r.height / k;
      const i = s.tiles.findIndex(([x, y, w, hh]) => px >= x && px < x + w && py >= y && py < y + hh);
      if (i >= 0) editor.open(name, i);
    };
    box.dataset.ready = "1";   // drawn, and a click opens a tile
  }
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

// The tile editor: the mask is a Uint8Array (0/255) at 1:1; the brush stamps exact discs, so what
// is saved is exactly what is shown.
