// The tile editor and the 8-bit grey PNG it saves.
import { $, api, image, latest, openLogin, toast, when } from "./core.js";
import { drawSides, keepSaved, link, review } from "./module.js";

export const editor = {
  box: null, mask: null, background: null, undo: [], redo: [], drawing: false, last: null, ask: latest(),

  side() { return review.sides[review.side]; },   // the acquisition shown on the page (maybe not the newest)

  async open(sideName, tile) {
    review.side = sideName; review.tile = tile;
    $("#editor").hidden = false;
    const loading = this.load();                    // sizes the canvas at once, then waits for the pictures
    $("#editor").scrollIntoView({ block: "nearest" });   // before it says ready: a click then lands where aimed
    await loading;
  },

  async load() {
    const s = this.side(), [x, y, w, h] = s.tiles[review.tile], tile = review.tile, current = this.ask();
    this.box = [x, y, w, h];
    this.mask = null;                       // no strokes, save or verify until this tile's mask is in
    delete $("#editor").dataset.ready;
    this.title();
    $("#ed-message").textContent = "";
    const c = $("#ed-canvas");
    c.width = w; c.height = h; c.style.width = w + "px"; c.style.height = h + "px";
    const crop = async (group) => {
      const tiled = s[group].full.tiled_id;
      const img = await image(tiled && tiled.length ? tiled[review.tile] : s[group].full.src_id);
      const off = document.createElement("canvas");
      off.width = w; off.height = h;
      const whole = !(tiled && tiled.length);
      off.getContext("2d").drawImage(img, whole ? x : 0, whole ? y : 0, w, h, 0, 0, w, h);
      return off;
    };
    const [bg, m] = await Promise.all([crop(review.layer), crop("corrected_mask")]);
    // another tile or layer was asked meanwhile (the same tile on another layer: its pictures may come first)
    if (!current() || review.tile !== tile || this.side() !== s) return;
    this.background = bg;
    const d = m.getContext("2d").getImageData(0, 0, w, h).data;
    this.mask = new Uint8Array(w * h);
    for (let i = 0; i < w * h; i++) this.mask[i] = d[4 * i] > 127 ? 255 : 0;
    this.undo = []; this.redo = [];
    this.paint();
    $("#editor").dataset.ready = String(tile);
  },

  title() {
    const s = this.side();
    $("#ed-title").textContent = `${review.module.name} · ${review.side} · tile ${review.tile + 1} of ${s.tile_count}` +
      ` · acquired ${when(s.acquired_at)}` + (s.verified_masks[review.tile] ? " · ✓ verified" : " · not verified");
  },

  paint() {
    if (!this.mask) return;
    const [, , w, h] = this.box, c = $("#ed-canvas"), g = c.getContext("2d");
    g.globalAlpha = 1; g.drawImage(this.background, 0, 0);
    const over = g.createImageData(w, h), a = Math.round(255 * $("#mask-opacity").value / 100);
    for (let i = 0; i < w * h; i++) {
      if (!this.mask[i]) continue;
      over.data[4 * i] = 255; over.data[4 * i + 1] = 45; over.data[4 * i + 2] = 85; over.data[4 * i + 3] = a;
    }
    const layer = document.createElement("canvas");
    layer.width = w; layer.height = h;
    layer.getContext("2d").putImageData(over, 0, 0);
    g.drawImage(layer, 0, 0);
  },

  stamp(cx, cy) {
    const [, , w, h] = this.box, r = +$("#ed-size").value / 2, v = this.tool() === "brush" ? 255 : 0;
    for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(h - 1, Math.ceil(cy + r)); y++)
      for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(w - 1, Math.ceil(cx + r)); x++)
        if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) this.mask[y * w + x] = v;
  },

  tool() { return document.querySelector("input[name=tool]:checked").value; },

  strokeTo(x, y) {
    const [x0, y0] = this.last || [x, y], steps = Math.max(1, Math.ceil(Math.hypot(x - x0, y - y0)));
    for (let i = 1; i <= steps; i++) this.stamp(x0 + (x - x0) * i / steps, y0 + (y - y0) * i / steps);
    this.last = [x, y];
    this.paint();
  },

  history(from, to) {
    if (!from.length || !this.mask) return;
    to.push(this.mask.slice()); this.mask = from.pop(); this.paint();
  },

  loading() {
    if (this.mask) return false;
    $("#ed-message").textContent = "The tile is still loading: nothing saved.";
    $("#ed-message").className = "error";
    return true;
  },

  async save() {
    if (this.loading()) return;
    const s = this.side(), [, , w, h] = this.box;   // the tile's address before the PNG is made: n or p pressed
    const url = `/api/modules/${encodeURIComponent(review.module.name)}/${review.side}/tiles/${review.tile}/mask` +
      `?result_id=${s.result_id}`;                 // meanwhile must not send this mask to the next tile
    const png = await greyPng(w, h, this.mask);
    await this.send(() => api("POST", url, png, "image/png"), "Correction saved; tile verified");
  },

  async verify() {
    if (this.loading()) return;
    const s = this.side();
    const url = `/api/modules/${encodeURIComponent(review.module.name)}/${review.side}/tiles/${review.tile}/verify`;
    await this.send(() => api("POST", url, { verified: true, result_id: s.result_id }), "Tile verified");
  },

  async send(fn, done) {
    const name = review.side;   // the side saved: the other side's tile may be opened before the answer lands
    try {
      const r = await fn();
      if (!keepSaved(name, r)) {   // another acquisition or module is shown now: saved, not drawn over it, and said
        toast(`${done} (${name} side, acquired ${when(r.side.acquired_at)})`, true);
        return;
      }
      const m = $("#ed-message");
      m.className = "muted";
      m.replaceChildren(done + ` on the acquisition of ${when(r.side.acquired_at)}.`);
      if (r.newer) {   // re-imaged while this was reviewed: kept on the acquisition it was made on, and said so
        const a = document.createElement("a");
        a.href = link(name, r.newer.result_id); a.textContent = "open the newer acquisition";
        m.className = "notice";
        m.append(` A newer acquisition of this side exists (acquired ${when(r.newer.acquired_at)}): `, a, ".");
      }
      this.title();
      drawSides();
    } catch (e) {
      const msg = e.status === 401 ? "Not saved: log in first." : `Not saved: ${e.message}`;
      $("#ed-message").textContent = msg;
      $("#ed-message").className = "error";
      if (e.status === 401) openLogin();
    }
  },

  step(d) {
    const n = this.side().tile_count;
    review.tile = (review.tile + d + n) % n;
    this.load();
  },
};

export function setupEditor() {
  const c = $("#ed-canvas");
  const at = (ev) => { const r = c.getBoundingClientRect(); return [Math.floor(ev.clientX - r.left), Math.floor(ev.clientY - r.top)]; };
  c.onmousedown = (ev) => {
    if (!editor.mask) return;
    editor.undo.push(editor.mask.slice()); editor.redo = [];
    if (editor.undo.length > 50) editor.undo.shift();
    editor.drawing = true; editor.last = null; editor.strokeTo(...at(ev));
  };
  c.onmousemove = (ev) => { if (editor.drawing) editor.strokeTo(...at(ev)); };
  window.onmouseup = () => { editor.drawing = false; editor.last = null; };
  $("#ed-size").oninput = () => { $("#ed-size-v").textContent = $("#ed-size").value; };
  $("#ed-undo").onclick = () => editor.history(editor.undo, editor.redo);
  $("#ed-redo").onclick = () => editor.history(editor.redo, editor.undo);
  $("#ed-prev").onclick = () => editor.step(-1);
  $("#ed-next").onclick = () => editor.step(1);
  $("#ed-save").onclick = () => editor.save();
  $("#ed-verify").onclick = () => editor.verify();
  $("#ed-close").onclick = () => { $("#editor").hidden = true; editor.box = null; };
  document.onkeydown = (ev) => {
    // Shortcuts only on the page itself: never while a dialog is open (the login's token went through them) or
    // while a field, slider, radio button or select takes the keys.
    if ($("#editor") === null || $("#editor").hidden || document.querySelector("dialog[open]")) return;
    if (ev.target instanceof Element && ev.target.closest("input, select, textarea, [contenteditable], dialog")) return;
    const k = ev.key.toLowerCase();
    if (ev.ctrlKey && k === "z" && !ev.shiftKey) editor.history(editor.undo, editor.redo);
    else if (ev.ctrlKey && (k === "y" || (k === "z" && ev.shiftKey))) editor.history(editor.redo, editor.undo);
    else if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    else if (k === "arrowright" || k === "n") editor.step(1);
    else if (k === "arrowleft" || k === "p") editor.step(-1);
    else if (k === "b" || k === "e") document.querySelector(`input[name=tool][value=${k === "b" ? "brush" : "eraser"}]`).checked = true;
    else if (k === "s") editor.save();
    else if (k === "v") editor.verify();
    else return;
    ev.preventDefault();
  };
}

// An 8-bit grey PNG (what the review API takes) from 0/255 bytes; deflate by the browser's CompressionStream.
const CRC = new Uint32Array(256).map((_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c; });
function crc32(bytes) { let c = 0xffffffff; for (const b of bytes) c = CRC[(c ^ b) & 255] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; }
function chunk(type, data) {
  const out = new Uint8Array(12 + data.length), dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  out.set([...type].map((ch) => ch.charCodeAt(0)), 4);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}
async function greyPng(w, h, pixels) {
  const raw = new Uint8Array((w + 1) * h);
  for (let y = 0; y < h; y++) raw.set(pixels.subarray(y * w, (y + 1) * w), y * (w + 1) + 1);   // filter 0 per row
  const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  const z = new Uint8Array(await new Response(stream).arrayBuffer());
  const ihdr = new Uint8Array(13), dv = new DataView(ihdr.buffer);
  dv.setUint32(0, w); dv.setUint32(4, h); ihdr[8] = 8; ihdr[9] = 0;
  const parts = [new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", z), chunk("IEND", new Uint8Array())];
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { png.set(p, at); at += p.length; }
  return png;
}
window.viEditor = editor;
