// Honest state: is the daemon there, are the values shown current, what must the operator know now.
// The banner says when the live link is down (the values beside it are then greyed as stale) and lists
// the daemon's alarms (GET /status's, in every status event), plus "daemon unreachable", the one alarm
// only the page can raise. A tone per new alarm when the operator switched it on (kept in localStorage).
import { $, loadSession } from "./core.js";

const GONE_AFTER_MS = 4000;     // a stream that ends and is back within this (an expired stream) is no alarm
const SOUND_KEY = "vi.alarmSound";
const state = { link: "connecting", downSince: null, status: null, lastFrameAt: null, alarms: [], heard: new Set(),
                wasDown: false };
window.viHealth = state;

export function linkChanged(link) {
  const was = state.link;
  state.link = link;
  if (link === "live") {
    state.downSince = null;
    if (state.wasDown) { state.wasDown = false; loadSession().catch(() => {}); }   // a restart logs everyone out
  } else if (was === "live" || state.downSince === null) state.downSince = Date.now();
  render();
}

export function statusSeen(s) { state.status = s; render(); }
export function frameSeen(f) { state.lastFrameAt = f.t_result ? f.t_result * 1000 : Date.now(); age(); }

function gone() { return state.link !== "live" && state.downSince !== null && Date.now() - state.downSince >= GONE_AFTER_MS; }

function render() {
  const down = gone();
  if (down) state.wasDown = true;
  const stopped = !down && state.status && state.status.status !== "processing";
  document.body.classList.toggle("stale", down);
  document.body.classList.toggle("line-stopped", !!stopped);
  const badge = $("#state");
  if (down) { badge.textContent = "daemon unreachable"; badge.className = "badge unreachable"; }
  const alarms = down ? [{ kind: "daemon_gone", message: `daemon unreachable since ${new Date(state.downSince).toLocaleTimeString()}: ` +
                            "every value below is from before, greyed" }]
                      : (state.status && state.status.alarms) || [];
  state.alarms = alarms;
  const list = $("#alarms");
  list.replaceChildren(...alarms.map((a) => {
    const li = document.createElement("li");
    li.dataset.kind = a.kind; li.textContent = a.message;
    return li;
  }));
  $("#banner").hidden = !alarms.length;
  const fresh = alarms.filter((a) => !state.heard.has(a.kind));
  state.heard = new Set(alarms.map((a) => a.kind));
  if (fresh.length && soundSetting() === "on") beep();
  age();
}

function age() {   // "last frame N s ago"; the line stopped or the link down says so
  const el = $("#frame-age");
  if (!el) return;
  const s = state.lastFrameAt == null ? null : Math.max(0, Math.round((Date.now() - state.lastFrameAt) / 1000));
  el.textContent = s == null ? "" : `last frame ${s} s ago` +
    (gone() ? " (daemon unreachable)" : state.status && state.status.status !== "processing" ? " (line stopped)" : "");
}

let audio = null;
function beep() {
  try {
    audio = audio || new AudioContext();
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = 880; g.gain.value = 0.2;
    o.connect(g).connect(audio.destination);
    o.start(); o.stop(audio.currentTime + 0.4);
    state.beeps = (state.beeps || 0) + 1;
  } catch (e) { /* no audio in this browser: the banner still says it */ }
}

// The switch is read from localStorage at each new alarm (another tab may have flipped it). A browser that
// keeps no storage for the site throws on every access (Chromium with the site's cookies blocked): the
// switch then lasts as long as the page, which must still connect (main.js calls setupHealth first).
let soundThisPage = null;
function soundSetting() {
  try { return localStorage.getItem(SOUND_KEY); } catch { return soundThisPage; }
}
function keepSound(value) {
  soundThisPage = value;
  try { localStorage.setItem(SOUND_KEY, value); } catch { /* kept for this page only */ }
}

export function setupHealth() {
  const box = $("#alarm-sound");
  const kept = soundSetting();                                  // a tick before the script ran counts too
  box.checked = kept === null ? box.checked : kept === "on";
  if (box.checked) keepSound("on");
  box.onchange = () => { keepSound(box.checked ? "on" : "off"); if (box.checked) beep(); };
  setInterval(() => { if (state.link !== "live") render(); else age(); }, 1000);
}
