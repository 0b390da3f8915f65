// The region of interest (POST /roi), drawn on the monitor's image: "Draw ROI", drag a rectangle, Apply.
// The image shown is already cut to the ROI in force, so a rectangle drawn on it is a part of that ROI.
import { $, act, api } from "./core.js";

const roi = { editing: false, from: null, rect: null };   // rect: [x, y, w, h] in canvas (preview) pixels
window.viRoi = roi;

export function roiText(r) {
  return r && r.length === 4 ? `ROI: x ${r[0]}, y ${r[2]}, ${r[1]} × ${r[3]} px` : "ROI: whole image";
}

export function roiOverlay(g, f) {   // called by drawFrame, on the frame just drawn
  if ($("#roi-now")) $("#roi-now").textContent = roiText(f.roi);
  if (!roi.rect) return;
  const [x, y, w, h] = roi.rect;
  g.save();
  g.lineWidth = 3; g.strokeStyle = "#000"; g.strokeRect(x, y, w, h);
  g.setLineDash([8, 6]); g.strokeStyle = "#00e5ff"; g.strokeRect(x, y, w, h);
  g.fillStyle = "rgba(0,229,255,.12)"; g.fillRect(x, y, w, h);
  g.restore();
}

export function setupRoi(live, redraw) {
  const c = $("#frame");
  const at = (ev) => {
    const r = c.getBoundingClientRect();
    return [Math.max(0, Math.min(c.width, (ev.clientX - r.left) * c.width / r.width)),
            Math.max(0, Math.min(c.height, (ev.clientY - r.top) * c.height / r.height))];
  };
  const buttons = (editing) => {
    roi.editing = editing;
    $("#roi-apply").hidden = $("#roi-cancel").hidden = !editing;
    $("#roi-edit").hidden = editing;
    c.classList.toggle("drawing", editing);
    if (!editing) { roi.rect = null; roi.from = null; redraw(); }
  };
  $("#roi-edit").onclick = () => { buttons(true); $("#roi-now").textContent = "drag a rectangle on the image"; };
  $("#roi-cancel").onclick = () => buttons(false);
  c.onmousedown = (ev) => { if (roi.editing) { roi.from = at(ev); roi.rect = null; } };
  c.onmousemove = (ev) => {
    if (!roi.editing || !roi.from) return;
    const [x, y] = at(ev), [x0, y0] = roi.from;
    roi.rect = [Math.min(x, x0), Math.min(y, y0), Math.abs(x - x0), Math.abs(y - y0)];
    redraw();
  };
  c.onmouseup = () => { roi.from = null; };
  $("#roi-apply").onclick = () => {
    const f = live.frame;
    if (!f || !roi.rect || roi.rect[2] < 4 || roi.rect[3] < 4) { $("#roi-now").textContent = "drag a rectangle first"; return; }
    const k = f.preview_scale || 1, cur = f.roi && f.roi.length === 4 ? f.roi : [0, 0, 0, 0];
    const [x, y, w, h] = roi.rect.map((v) => v / k);
    const next = [Math.round(cur[0] + x), Math.round(w), Math.round(cur[2] + y), Math.round(h)];
    act(() => api("POST", "/roi", next), `${roiText(next)} set`).then(() => buttons(false), () => {});
  };
  $("#roi-whole").onclick = () => act(() => api("POST", "/roi", []), "ROI: the whole image").catch(() => {});
}
