// dragkit drag editor: plain ES modules, no build step, nothing fetched from elsewhere.
//   state.js     the shared state and the page's elements
//   socket.js    the websocket (connect, send, reconnect)
//   draw.js      the stage: sizes, coordinates, the overlay, the mask
//   controls.js  buttons, inputs, the points list, pointer and keyboard
//   app.js       (this file) what each server frame does, and start-up
// The server is the source of truth: every action goes over the websocket
// and the page redraws from the `state` frame that answers it; distances,
// "arrived" and option bounds are the engine's (docs/app.md, "Websocket protocol").

import { S, el, optInputs, pairStatus } from "./state.js";
import { connect, ack, send } from "./socket.js";
import { decodeMask, draw, drawn, layout, setImageSize, smoothTrail, toScreen } from "./draw.js";
import { bindPhoto, onProgress, photoView, renderPhoto } from "./photo.js";
import {
  applyOptionLimits, bindControls, loadExamples, maybeStartGuide, renderControls, renderPoints, restoreInputs, setConn, setRunState,
  showDistances, showOption, toast, updateLinks,
} from "./controls.js";

// The token travels only in the HttpOnly cookie the login page obtained
// (never in a URL this page builds); drop a #token=... left in the address.
if (location.hash.includes("token=")) history.replaceState(null, "", location.pathname + location.search);
sessionStorage.removeItem("dragkit.token");  // older versions kept it here

function showImage(url) {
  el.image.src = url;
  return el.image.decode().catch(() => {});
}

// The status bar tells the last drag's outcome only while the edit is the one it left
// (same image, same points): undo, a new seed or psi, moved points or an opened file reset it.
function outcomeKey(m) { return `${m.image_rev}|${JSON.stringify(m.points)}`; }

function applyState(m) {
  if (m.re !== undefined) S.resync.delete(m.re);
  S.st = m;
  if (!m.running) {
    if (S.outcomeKey === "pending") S.outcomeKey = outcomeKey(m);
    else if (S.outcomeKey && S.outcomeKey !== outcomeKey(m)) {
      S.outcomeKey = null;
      S.interrupted = null;
      setRunState("idle", "idle");
      el.stepInfo.textContent = "step 0";
    }
    showDistances(m.distances);
  }
  if (S.openRequest && m.re === S.openRequest.id) {
    const what = m.seed !== null ? `seed ${m.seed}` : "an edited latent";
    toast(`Opened ${S.openRequest.name}: ${m.model}, ${what}, ${m.points.length} point pair${m.points.length === 1 ? "" : "s"}.`, "info");
    S.openRequest = null;
    if (document.activeElement === el.seed) el.seed.blur();
  }
  S.running = m.running;
  if (!m.running) S.live = null;
  if (m.width && (m.width !== S.W || m.height !== S.H)) setImageSize(m.width, m.height);
  S.points = m.points.map((p) => ({ handle: p.handle.slice(), target: p.target.slice() }));
  if (S.selected >= S.points.length) S.selected = S.points.length - 1;
  if (document.activeElement !== el.seed) el.seed.value = m.seed ?? "";  // empty: an edit not made from a seed
  el.seed.placeholder = m.seed === null ? "(latent)" : "";
  if (document.activeElement !== el.psi && m.psi !== null) el.psi.value = m.psi;
  if (m.model) el.model.value = m.model;
  if (document.activeElement !== el.maxSteps) el.maxSteps.value = m.max_steps;
  applyOptionLimits(m.option_limits);  // a select's choices first, then the values
  for (const inp of optInputs) {
    if (document.activeElement === inp) continue;
    showOption(inp, m.options[inp.dataset.opt]);
    const auto = m.options_resolved ? m.options_resolved[inp.dataset.opt] : undefined;
    const shown = inp.dataset.opt === "stop_distance" && (auto === undefined || auto === null) ? m.stop_distance : auto;
    if (inp.type === "number" && shown !== undefined && shown !== null) inp.placeholder = `auto (${typeof shown === "number" ? +shown.toFixed(3) : shown})`;
  }
  el.resInfo.textContent = m.model ? `${m.model} · ${m.width}×${m.height}` : "no model";
  if (m.image) { S.imageRev = m.image_rev; S.pending = null; showImage(m.image).then(draw); }
  decodeMask(m.mask).then(draw);
  if (!m.running && el.runState.classList.contains("running")) setRunState("idle", "idle");
  renderControls();
  renderPoints();
  updateLinks();
  renderPhoto(m);
  draw();
}

const frameHandlers = {
  welcome(m) {
    S.sid = m.session;
    sessionStorage.setItem("dragkit.session", m.session);
    S.connected = true;
    S.limits = m.limits;
    setConn(true, "connected");
    el.maxSteps.max = m.limits.max_steps;
    el.model.innerHTML = "";
    for (const mi of m.models) {
      const o = document.createElement("option");
      o.value = mi.name;
            // H x W when not square (StyleGAN-Human: H x H/2), else the side.
      const size = mi.resolution ? (mi.width && mi.width !== mi.resolution ? `${mi.resolution}×${mi.width}px` : `${mi.resolution}px`) : "";
      o.textContent = `${mi.name}${size ? ` · ${size}` : ""}${mi.source === "cache" ? " (cache)" : ""}`;
      el.model.appendChild(o);
    }
    let wasRunning = S.interrupted;
    try {
      const saved = sessionStorage.getItem("dragkit.interrupted");
      if (saved) wasRunning = JSON.parse(saved);
    } catch { /* no storage */ }
    sessionStorage.removeItem("dragkit.interrupted");
    S.interrupted = null;
    if (wasRunning && m.resumed !== "new") {
      S.outcomeKey = "pending";  // the pill stays until the edit changes
      S.interruptedAt = wasRunning.step;  // the server may still send that drag's `done` to this page
      setRunState("stopped", "interrupted");
      el.stepInfo.textContent = `interrupted at step ${wasRunning.step}`;
      toast(`The drag was interrupted (the page reloaded or the connection was lost) at step ${wasRunning.step}; ` +
            "press Start to carry on from the image you see.", "warn");
    } else if (m.resumed === "resumed") toast("Reopened your edit where you left it.", "info");
    if (m.resumed === "copied") toast("This edit is open in another tab; this tab works on a copy.", "info");
    maybeStartGuide(m);
    updateLinks();
  },
  state: applyState,
  started(m) {
    S.interruptedAt = null;
    S.running = true;
    S.live = { points: m.points.map((p) => p.handle), step: 0, distances: null, arrived: null };
    S.trail = m.points.map((p) => [p.handle.slice()]);
    setRunState("running", "running");
    renderControls();
    draw();
  },
  frame(m) {
    const now = performance.now();
    if (S.metrics.startClickAt !== null && S.metrics.firstFrameAt === null) S.metrics.firstFrameAt = now;
    S.metrics.frames += 1;
    S.metrics.frameTimes.push(now);
    S.live = { points: m.points, targets: m.targets, step: m.step, distances: m.distances, arrived: m.arrived };
    m.points.forEach((p, i) => { (S.trail[i] = S.trail[i] || []).push(p.slice()); });
    showImage(m.image).then(() => {
      draw();
      const t = performance.now();
      if (S.metrics.firstDrawnAt === null) S.metrics.firstDrawnAt = t;
      S.metrics.drawnTimes.push(t);
      ack();
    });
    el.stepInfo.textContent = `step ${m.step} / ${S.st ? S.st.max_steps : "?"}`;
    showDistances(m.distances);
  },
  done(m) {
    if (!S.running && S.interruptedAt !== null && S.interruptedAt !== undefined) {
      // the end of the drag the reload interrupted (it stopped on the server): still "interrupted"
      S.outcomeKey = "pending";
      setRunState("stopped", "interrupted");
      el.stepInfo.textContent = `interrupted at step ${m.steps}`;
      return;
    }
    S.running = false;
    S.live = null;
    S.lastOutcome = m;
    if (m.points) m.points.forEach((p, i) => { if (S.trail[i]) S.trail[i].push(p.slice()); });
    const label = { reached: "reached", max_steps: "step cap", stopped: "stopped", error: "failed" }[m.reason] || m.reason;
    setRunState(m.reason === "reached" ? "reached" : "stopped", label);
    el.stepInfo.textContent = `${m.steps} steps · ${m.seconds}s`;
    S.outcomeKey = "pending";  // taken from the state that follows
    if (m.distances) showDistances(m.distances);
    if (m.reason === "max_steps") toast(`Stopped at the step cap (${m.steps} steps) before every handle arrived.`, "info");
  },
  error(m) {
    toast(m.message);
    if (S.openRequest && m.re === S.openRequest.id) S.openRequest = null;
    if (m.re !== undefined && S.resync.has(m.re)) {
      S.resync.delete(m.re);
      restoreInputs();  // at once, even in a focused field
      send({ type: "state" });  // put the inputs back as the server has them
    }
  },
  pong() {},
  invert_progress: onProgress,
};

// Read-only view for tests and benchmarks (bench_app.py, test_browser.py).
window.dragkit = {
  get state() { return S.st; },
  get sid() { return S.sid; },
  get connected() { return S.connected; },
  get running() { return S.running; },
  get points() { return S.points; },
  get pending() { return S.pending; },
  get maskCount() { return S.mask ? S.mask.reduce((a, b) => a + b, 0) : 0; },
  get imageRev() { return S.imageRev; },
  get lastOutcome() { return S.lastOutcome; },
  get live() { return S.live; },
  get metrics() { return S.metrics; },
  get drawn() { return drawn; },
  get photo() { return photoView; },
  get trails() { return S.trail.map((t) => t.map((p) => p.slice())); },  // the tracked positions, as received
  pairStatus,
  smoothTrail,
  toScreen: (xy) => { const r = el.overlay.getBoundingClientRect(); const [x, y] = toScreen(xy); return [r.left + x, r.top + y]; },
};

window.addEventListener("resize", layout);
// A reload during a drag stops it on the server; the reloaded page says so (welcome).
window.addEventListener("pagehide", () => {
  if (S.running) sessionStorage.setItem("dragkit.interrupted", JSON.stringify({ step: S.live ? S.live.step : 0 }));
});
bindControls();
bindPhoto(toast);
loadExamples();
connect(frameHandlers, setConn, () => toast("Not connected to the server; retrying…"));
