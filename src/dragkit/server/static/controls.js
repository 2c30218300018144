// The controls: buttons, inputs, the points list, toasts, pointer and keyboard.
// Every action is a message to the server; the page redraws from its answer.

import { S, el, optInputs, fmt, pairStatus, resetMetrics } from "./state.js";
import { draw, hitTest, maskPng, stamp, toImage } from "./draw.js";
import { apiUrl, send } from "./socket.js";

export function toast(text, kind) {
  const t = document.createElement("div");
  t.className = "toast" + (kind ? " " + kind : "");
  t.textContent = text;
  t.setAttribute("role", kind === "info" ? "status" : "alert");
  el.toasts.appendChild(t);
  setTimeout(() => t.remove(), kind === "info" ? 3500 : 6000);
  while (el.toasts.children.length > 4) el.toasts.firstChild.remove();
}

export function setConn(on, text) {
  el.conn.className = "conn " + (on ? "on" : "off");
  el.conn.textContent = text;
}

export function setRunState(cls, text) {
  el.runState.className = "pill " + cls;
  el.runState.textContent = text;
}

// A message whose refusal puts the inputs back as the server has them.
function sendResync(msg) {
  const id = send(msg);
  if (id) S.resync.add(id);
}

export function renderControls() {
  const st = S.st || {};
  const busy = S.running || !S.connected;
  el.start.disabled = busy || !S.points.length || !st.model;
  el.stop.disabled = !S.running;
  el.undo.disabled = busy || (!st.can_undo && !S.pending);
  el.redo.disabled = busy || !st.can_redo;
  for (const b of [el.newImage, el.randomSeed, el.clearMask, el.clearPoints, el.model, el.seed, el.psi, el.maxSteps, ...optInputs]) b.disabled = busy;
  el.stage.classList.toggle("running", S.running);
  el.hint.classList.toggle("hidden", S.points.length > 0 || S.tool !== "points" || S.running);
  el.hint.innerHTML = S.pending
    ? 'Now click where the <b class="blue">target</b> should be (Esc cancels).'
    : 'Click to place a <b class="red">handle</b>, click again for its <b class="blue">target</b>.';
  if (S.pending) el.hint.classList.remove("hidden");
}

// The points list: each pair's handle, target and distance; "ok" when the
// engine says it has arrived (within its stop distance).
export function renderPoints() {
  el.points.innerHTML = "";
  el.pointsEmpty.style.display = S.points.length ? "none" : "";
  S.points.forEach((p, i) => {
    const li = document.createElement("li");
    if (i === S.selected) li.classList.add("selected");
    const h = S.live && S.live.points[i] ? S.live.points[i] : p.handle;
    const status = pairStatus(i);
    const d = status ? `${status.distance.toFixed(1)} px` : "…";
    const title = S.st && S.st.stop_distance !== null ? ` title="stops within ${S.st.stop_distance} px"` : "";
    li.innerHTML = `<span class="n">${i + 1}</span><span class="coords"><span class="red">●</span> ${fmt(h)} → <span class="blue">●</span> ${fmt(p.target)}</span><span class="d${status && status.arrived ? " ok" : ""}"${title}>${d}</span>`;
    const rm = document.createElement("button");
    rm.textContent = "×";
    rm.title = "Remove this pair";
    rm.disabled = S.running;
    rm.onclick = (e) => { e.stopPropagation(); send({ type: "remove_point", index: i }); };
    li.appendChild(rm);
    li.onclick = () => { S.selected = i; renderPoints(); draw(); };
    el.points.appendChild(li);
  });
}

export function showDistances(d) {
  if (!d || !d.length) { el.distInfo.textContent = ""; return; }
  el.distInfo.textContent = "distance " + d.map((x) => x.toFixed(1)).join(" · ") + " px";
  if (S.live) renderPoints();
}

// Option inputs take their bounds from the server (the engine's, for this model).
export function applyOptionLimits(limits) {
  for (const inp of optInputs) {
    const lim = limits && limits[inp.dataset.opt];
    if (!lim || inp.tagName !== "INPUT") continue;
    if (lim.min !== undefined && lim.min !== null) inp.min = lim.min;
    if (lim.max !== undefined && lim.max !== null) inp.max = lim.max;
  }
}

export function updateLinks() {
  const ok = !!(S.sid && S.st && S.st.model);
  const base = `api/sessions/${S.sid}/`;
  const set = (a, path, enabled, name) => {
    a.href = enabled ? apiUrl(base + path) : "#";
    a.classList.toggle("disabled", !enabled);
    if (name) a.download = name;
  };
  const tag = S.st && S.st.model ? `${S.st.model}-${S.st.seed ?? "edit"}` : "image";
  set(el.dlPng, "image.png", ok, `dragkit-${tag}.png`);
  set(el.dlSession, "session.dragkit.json", ok, `dragkit-${tag}.dragkit.json`);
  const vid = ok && S.st.has_video;
  set(el.dlMp4, "progress.mp4", vid, `dragkit-${tag}-progress.mp4`);
  set(el.dlGif, "progress.gif", vid, `dragkit-${tag}-progress.gif`);
}

// -- commands -------------------------------------------------------------------

function setTool(tool) {
  S.tool = tool;
  S.pending = null;
  for (const b of el.tools) b.classList.toggle("active", b.dataset.tool === tool);
  el.stage.classList.remove("tool-points", "tool-brush", "tool-erase");
  el.stage.classList.add("tool-" + tool);
  if (tool !== "points" && !S.showMask) { S.showMask = true; el.showMask.checked = true; }
  renderControls();
  draw();
}

function setRadius(r) {
  S.radius = Math.max(1, Math.min(32, r));
  el.radius.value = S.radius;
  el.radiusOut.textContent = S.radius;
  draw();
}

function start() {
  if (S.running || el.start.disabled) return;
  resetMetrics(performance.now());  // for benchmarks/bench_app.py: click -> first frame received / drawn
  S.lastOutcome = null;
  send({ type: "start", max_steps: +el.maxSteps.value || undefined });
}

function stop() { if (S.running) send({ type: "stop" }); }

function cancelPending() { S.pending = null; renderControls(); draw(); }

function undo() {
  if (S.pending) { cancelPending(); return; }
  if (!el.undo.disabled) send({ type: "undo" });
}

function redo() { if (!el.redo.disabled) send({ type: "redo" }); }

// A new image for the model, seed and psi in the inputs (the server checks them).
function newImage(seed) {
  if (seed !== undefined) el.seed.value = seed;
  const s = Number(el.seed.value);
  sendResync({ type: "new", model: el.model.value, seed: Number.isInteger(s) ? s : el.seed.value, psi: +el.psi.value });
}

function randomSeed() { newImage(Math.floor(Math.random() * 100000)); }

function downloadSession() { if (!el.dlSession.classList.contains("disabled")) el.dlSession.click(); }

// -- pointer ----------------------------------------------------------------------

function pointerDown(ev) {
  if (ev.button !== 0 || S.running || !S.W || !S.st || !S.st.model) return;
  el.overlay.setPointerCapture(ev.pointerId);
  const xy = toImage(ev);
  if (S.tool === "points") {
    const hit = S.pending ? null : hitTest(ev);
    if (hit) {
      S.dragging = { i: hit.i, which: hit.which, xy: S.points[hit.i][hit.which].slice(), moved: false };
      S.selected = hit.i;
      renderPoints();
    } else if (!S.pending) {
      if (S.limits && S.points.length >= S.limits.max_points) { toast(`At most ${S.limits.max_points} point pairs.`); return; }
      S.pending = xy;
    } else {
      send({ type: "add_point", handle: S.pending, target: xy });
      S.selected = S.points.length;
      S.pending = null;
    }
    renderControls();
    draw();
  } else {
    if (!S.mask) S.mask = new Uint8Array(S.W * S.H);
    S.painting = { last: xy, value: S.tool === "brush" ? 1 : 0 };
    stamp(xy, S.painting.value);
  }
}

function pointerMove(ev) {
  if (!S.W) return;
  S.mouse = toImage(ev);
  if (S.dragging) {
    S.dragging.xy = S.mouse;
    S.dragging.moved = true;
  } else if (S.painting) {
    const [x0, y0] = S.painting.last, [x1, y1] = S.mouse;
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / Math.max(0.5, S.radius / 2)));
    for (let j = 1; j <= n; j++) stamp([x0 + (x1 - x0) * j / n, y0 + (y1 - y0) * j / n], S.painting.value);
    S.painting.last = S.mouse;
  }
  draw();
}

function pointerEnd() {
  if (S.dragging) {
    const d = S.dragging;
    S.dragging = null;
    if (d.moved) {
      const msg = { type: "move_point", index: d.i };
      msg[d.which] = d.xy;
      S.points[d.i][d.which] = d.xy;  // shown until the server's state arrives
      send(msg);
    }
    draw();
  }
  if (S.painting) {
    S.painting = null;
    send({ type: "set_mask", mask: S.mask.some((v) => v) ? maskPng() : null });
  }
}

function keyDown(e) {
  const t = e.target;
  const typing = t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
  const mod = e.ctrlKey || e.metaKey;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (mod && key === "z" && !typing) { e.preventDefault(); e.shiftKey ? redo() : undo(); return; }
  if (mod && key === "y" && !typing) { e.preventDefault(); redo(); return; }
  if (mod && key === "s") { e.preventDefault(); downloadSession(); return; }
  if (typing || mod || e.altKey) return;
  // Space on a focused button would also click it: the shortcut wins.
  if (key === " " && t && t.tagName === "BUTTON") t.blur();
  switch (key) {
    case " ": e.preventDefault(); S.running ? stop() : start(); break;
    case "Escape": if (S.pending) cancelPending(); else stop(); break;
    case "p": setTool("points"); break;
    case "m": setTool("brush"); break;
    case "e": setTool("erase"); break;
    case "[": setRadius(S.radius - 1); break;
    case "]": setRadius(S.radius + 1); break;
    case "h": el.showMask.checked = S.showMask = !S.showMask; draw(); break;
    case "r": if (!S.running) randomSeed(); break;
    case "?": el.help.showModal(); break;
    case "Delete": case "Backspace":
      if (S.running || !S.points.length) break;
      e.preventDefault();
      if (e.shiftKey) send({ type: "clear_points" });
      else send({ type: "remove_point", index: S.selected >= 0 ? S.selected : S.points.length - 1 });
      break;
    default: return;
  }
}

// Wire every control to its command (once, at start-up).
export function bindControls() {
  el.start.onclick = start;
  el.stop.onclick = stop;
  el.undo.onclick = undo;
  el.redo.onclick = redo;
  el.newImage.onclick = () => newImage();
  el.randomSeed.onclick = randomSeed;
  el.model.onchange = () => newImage();
  el.psi.onchange = () => newImage();
  el.seed.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); el.seed.blur(); newImage(); } });
  // Enter in a number field applies it and hands the keyboard back to the shortcuts.
  for (const inp of [el.psi, el.maxSteps, ...optInputs]) {
    inp.addEventListener("keydown", (e) => { if (e.key === "Enter") inp.blur(); });
  }
  el.clearPoints.onclick = () => { if (S.points.length) send({ type: "clear_points" }); };
  el.clearMask.onclick = () => { if (S.mask) send({ type: "set_mask", mask: null }); };
  el.showMask.onchange = () => { S.showMask = el.showMask.checked; draw(); };
  el.radius.oninput = () => setRadius(+el.radius.value);
  for (const b of el.tools) b.onclick = () => setTool(b.dataset.tool);
  el.helpBtn.onclick = () => el.help.showModal();
  el.maxSteps.onchange = () => {
    const v = +el.maxSteps.value;
    sendResync({ type: "options", max_steps: Number.isInteger(v) ? v : el.maxSteps.value });
  };
  for (const inp of optInputs) {
    inp.onchange = () => {
      let v = inp.value;
      if (inp.tagName === "INPUT") v = v === "" ? null : +v;
      sendResync({ type: "options", options: { [inp.dataset.opt]: v } });
    };
  }
  el.openFile.onchange = async () => {
    const f = el.openFile.files[0];
    el.openFile.value = "";
    if (!f) return;
    if (S.limits && f.size > S.limits.max_upload_bytes) {
      toast(`That file is ${(f.size / 1048576).toFixed(1)} MiB; the limit is ${(S.limits.max_upload_bytes / 1048576).toFixed(0)} MiB.`);
      return;
    }
    send({ type: "open", data: await f.text() });
  };
  for (const a of [el.dlPng, el.dlMp4, el.dlGif, el.dlSession]) {
    a.addEventListener("click", (e) => { if (a.classList.contains("disabled")) e.preventDefault(); });
  }
  el.overlay.addEventListener("contextmenu", (ev) => {
    ev.preventDefault();
    if (S.running || S.tool !== "points") return;
    const hit = hitTest(ev);
    if (hit) send({ type: "remove_point", index: hit.i });
  });
  el.overlay.addEventListener("pointerdown", pointerDown);
  el.overlay.addEventListener("pointermove", pointerMove);
  el.overlay.addEventListener("pointerleave", () => { S.mouse = null; draw(); });
  el.overlay.addEventListener("pointerup", pointerEnd);
  el.overlay.addEventListener("pointercancel", pointerEnd);
  document.addEventListener("keydown", keyDown);
  setTool("points");
  setRadius(6);
}
