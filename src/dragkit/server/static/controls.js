// The controls: buttons, inputs, the points list, toasts, pointer and keyboard.
// Every action is a message to the server; the page redraws from its answer.

import { S, el, optInputs, fmt, pairStatus, resetMetrics } from "./state.js";
import { draw, hitTest, maskPng, stamp, toImage } from "./draw.js";
import { apiUrl, send } from "./socket.js";

// One toast per message: the same text again refreshes the one shown (with a count), never stacks.
export function toast(text, kind) {
  const life = kind === "info" ? 3500 : 6000;
  for (const t of el.toasts.children) {
    if (t.dataset.text !== text) continue;
    const n = (+t.dataset.count || 1) + 1;
    t.dataset.count = n;
    t.textContent = `${text} (×${n})`;
    clearTimeout(t._timer);
    t._timer = setTimeout(() => t.remove(), life);
    return;
  }
  const t = document.createElement("div");
  t.className = "toast" + (kind ? " " + kind : "");
  t.textContent = text;
  t.dataset.text = text;
  t.setAttribute("role", kind === "info" ? "status" : "alert");
  el.toasts.appendChild(t);
  t._timer = setTimeout(() => t.remove(), life);
  while (el.toasts.children.length > 3) el.toasts.firstChild.remove();
}

export function setConn(on, text) {
  el.conn.className = "conn " + (on ? "on" : "off");
  el.conn.textContent = text;
  if (!on) {
    if (S.running) {  // the connection went during a drag: it has stopped on the server
      S.interrupted = { step: S.live ? S.live.step : 0 };
      S.running = false;
      S.live = null;
      setRunState("stopped", "interrupted");
    }
    renderControls();  // Start, undo, ... disabled at once while there is no server
  }
}

// Put the inputs back as the server has them (after a refused or malformed value).
export function restoreInputs() {
  const st = S.st;
  if (!st) return;
  el.seed.value = st.seed ?? "";
  if (st.psi !== null && st.psi !== undefined) el.psi.value = st.psi;
  el.maxSteps.value = st.max_steps;
  for (const inp of optInputs) showOption(inp, st.options[inp.dataset.opt]);
  renderMethod();
}

// A number typed into `inp`, or null after one clear message (empty, letters, not finite);
// `optional`: empty means "auto" (returned as undefined).
function numberFrom(inp, label, optional = false) {
  const raw = inp.value.trim();
  if (raw === "" && !inp.validity.badInput && optional) return undefined;
  const v = Number(raw);
  if (raw === "" || inp.validity.badInput || !Number.isFinite(v)) {
    toast(`${label}: type a number${optional ? " (or leave it empty for auto)" : ""}.`);
    restoreInputs();
    return null;
  }
  return v;
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
  renderGuide();
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
    const held = S.st && (S.st.handles_outside_mask || []).includes(i)
      ? '<span class="warn" title="This handle is outside the flexible region (mask): it cannot move">⚠</span>' : "";
    li.innerHTML = `<span class="n">${i + 1}</span><span class="coords"><span class="red">●</span> ${fmt(h)} → <span class="blue">●</span> ${fmt(p.target)}</span>${held}<span class="d${status && status.arrived ? " ok" : ""}"${title}>${d}</span>`;
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
  // Up to 4 pairs each distance; more as a summary, so the status bar stays one line.
  el.distInfo.textContent = d.length <= 4
    ? "distance " + d.map((x) => x.toFixed(1)).join(" · ") + " px"
    : `${d.length} pairs · distance max ${Math.max(...d).toFixed(1)} · mean ${(d.reduce((a, b) => a + b, 0) / d.length).toFixed(1)} px`;
  el.distInfo.title = "distance " + d.map((x) => x.toFixed(1)).join(" · ") + " px";
  if (S.live) renderPoints();
}

// Option inputs take their bounds from the server (the engine's, for this model): a number
// input its min and max, a select its choices (the labels in index.html are kept, a choice the
// page has no label for shows its name), a checkbox a "bool". An option the server does not
// list is hidden. Then the method's own options are shown and the others hidden.
export function applyOptionLimits(limits) {
  for (const inp of optInputs) {
    const lim = limits && limits[inp.dataset.opt];
    const box = optionBox(inp);
    box.classList.toggle("unlisted", !lim);
    if (!lim) continue;
    if (inp.tagName === "SELECT" && Array.isArray(lim.choices)) {
      const want = lim.choices.map(String);
      const have = [...inp.options].map((o) => o.value);
      if (want.join("\n") !== have.join("\n")) {
        const labels = Object.fromEntries([...inp.options].map((o) => [o.value, o.textContent]));
        const value = inp.value;
        inp.innerHTML = "";
        for (const c of want) {
          const o = document.createElement("option");
          o.value = c;
          o.textContent = labels[c] ?? c;
          inp.appendChild(o);
        }
        if (want.includes(value)) inp.value = value;
      }
    } else if (inp.type === "number") {
      if (lim.min !== undefined && lim.min !== null) inp.min = lim.min;
      if (lim.max !== undefined && lim.max !== null) inp.max = lim.max;
    }
  }
  renderMethod();
}

// The label (grid cell) of an option's input.
function optionBox(inp) { return inp.closest("label") || inp; }

// Show an option's value in its input: a checkbox is ticked, a select or number shows it ("" = auto).
export function showOption(inp, v) {
  if (inp.type === "checkbox") inp.checked = v === true;
  else inp.value = v === null || v === undefined ? "" : v;
}

// The options of the chosen method (data-method on their label) are shown, the others hidden;
// the method is the server's, or the one just picked while the server's answer is on its way.
export function renderMethod(method) {
  const sel = optInputs.find((i) => i.dataset.opt === "method");
  const m = method ?? (S.st && S.st.options ? S.st.options.method : undefined) ?? (sel ? sel.value : undefined);
  for (const inp of optInputs) {
    const box = optionBox(inp);
    const only = box.dataset ? box.dataset.method : undefined;
    box.hidden = box.classList.contains("unlisted") || (!!only && !!m && !only.split(" ").includes(m));
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
  const scaleSel = document.getElementById("dl-scale");
  if (scaleSel && S.st && S.st.height) {
    // the choices and the default: small models enlarged (nearest neighbour) to a useful size, like the video
    const side = Math.max(S.st.height, S.st.width || S.st.height);
    const auto = Math.max(1, Math.min(16, Math.ceil(256 / side)));
    const key = `${side}`;
    if (scaleSel.dataset.side !== key) {
      scaleSel.dataset.side = key;
      scaleSel.innerHTML = "";
      for (const k of [1, 2, 4, 8, 16]) {
        if (k > 1 && side * k > 4096) break;
        const o = document.createElement("option");
        o.value = k;
        o.textContent = `${k}× · ${(S.st.width || side) * k}×${S.st.height * k}`;
        scaleSel.appendChild(o);
      }
      const best = [...scaleSel.options].map((o) => +o.value).filter((k) => k <= auto).pop() || 1;
      scaleSel.value = String(best);
    }
  }
  const k = scaleSel && scaleSel.value ? +scaleSel.value : 1;
  set(el.dlPng, `image.png${k > 1 ? `?scale=${k}` : ""}`, ok, `${tag}-edit.png`);
  set(el.dlSession, "session.dragkit.json", ok, `${tag}.dragkit.json`);
  const vid = ok && S.st.has_video;
  set(el.dlMp4, "progress.mp4", vid, `${tag}-progress.mp4`);
  set(el.dlGif, "progress.gif", vid, `${tag}-progress.gif`);
}

// -- the guided first run ------------------------------------------------------
// Shown on a first visit (until dismissed): click a handle, click its target, press Start;
// "Show me" plays the model's example edit (static/examples.json: per model its seed, psi and
// point pairs; a model without one, or of another size, has no "Show me").

const GUIDE_KEY = "dragkit.guide.done";
export const guide = { on: false, started: false };
let examples = {};

export function loadExamples() {
  return fetch(apiUrl("static/examples.json"), { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : {}))
    .then((d) => { examples = (d && d.examples) || {}; renderGuide(); })
    .catch(() => {});
}

// The example edit of the open model, or null.
export function exampleFor(st) {
  const ex = st && st.model ? examples[st.model] : null;
  if (!ex || !Array.isArray(ex.size) || ex.size[0] !== st.height || ex.size[1] !== st.width) return null;
  return ex;
}

export function maybeStartGuide(welcome) {
  let seen = false;
  try { seen = localStorage.getItem(GUIDE_KEY) === "1"; } catch { seen = true; }
  guide.on = !seen && welcome.resumed === "new";
  renderGuide();
}

function dismissGuide() {
  guide.on = false;
  try { localStorage.setItem(GUIDE_KEY, "1"); } catch { /* private mode: shown again next time */ }
  renderGuide();
}

export function renderGuide() {
  const ex = exampleFor(S.st);
  const replay = document.getElementById("replay-example");
  if (replay) {
    replay.disabled = !ex;
    replay.title = ex ? `The example edit on ${S.st.model}: ${ex.what}` : "No example edit for this model";
  }
  const box = document.getElementById("guide");
  if (!box) return;
  box.hidden = !guide.on;
  if (!guide.on) return;
  const steps = [S.pending || S.points.length > 0, S.points.length > 0, guide.started || S.running || !!S.lastOutcome];
  box.querySelectorAll("li").forEach((li, i) => li.classList.toggle("done", steps[i]));
  const btn = document.getElementById("guide-example");
  if (btn) {
    btn.hidden = !ex;
    if (ex) btn.title = `Play an example edit: ${ex.what}`;
  }
}

// The example edit: a new image, its pairs, Start (the server answers each in order).
export function playExample() {
  const ex = exampleFor(S.st);
  if (S.running || !ex) return;
  send({ type: "new", model: S.st.model, seed: ex.seed, psi: ex.psi });
  for (const p of ex.pairs) send({ type: "add_point", handle: p.handle, target: p.target });
  guide.started = true;
  resetMetrics(performance.now());
  send({ type: "start" });
}

// Handles on a fixed pixel of the mask cannot move: say so before a drag, and offer to extend the mask.
function confirmOutsideMask(then) {
  const out = (S.st && S.st.handles_outside_mask) || [];
  const dlg = document.getElementById("mask-warn");
  if (!out.length || !dlg) { then(); return; }
  document.getElementById("mask-warn-text").textContent =
    `${out.length === 1 ? "Handle" : "Handles"} ${out.map((i) => i + 1).join(", ")} ${out.length === 1 ? "lies" : "lie"} outside ` +
    "the flexible region you painted: it cannot move, and the drag would run to its step cap.";
  dlg.returnValue = "";
  dlg.onclose = () => {
    if (dlg.returnValue === "extend") {
      if (!S.mask) S.mask = new Uint8Array(S.W * S.H);
      const r = S.radius;
      S.radius = Math.max(r, 3);
      for (const i of out) stamp(S.points[i].handle, 1);
      S.radius = r;
      send({ type: "set_mask", mask: maskPng() });
      then();
    } else if (dlg.returnValue === "anyway") then();
  };
  dlg.showModal();
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
  confirmOutsideMask(() => {
    resetMetrics(performance.now());  // for benchmarks/bench_app.py: click -> first frame received / drawn
    S.lastOutcome = null;
    guide.started = true;
    send({ type: "start", max_steps: +el.maxSteps.value || undefined });
  });
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
  const s = numberFrom(el.seed, "Seed");
  if (s === null) return;
  const psi = numberFrom(el.psi, "ψ");
  if (psi === null) return;
  sendResync({ type: "new", model: el.model.value, seed: Number.isInteger(s) ? s : el.seed.value, psi });
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
      // Shift+drag moves the whole pair (handle and target together)
      S.dragging = { i: hit.i, which: hit.which, xy: S.points[hit.i][hit.which].slice(), moved: false,
                     pair: ev.shiftKey, from: xy, orig: { handle: S.points[hit.i].handle.slice(), target: S.points[hit.i].target.slice() } };
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
    const d = S.dragging;
    d.xy = S.mouse;
    d.moved = true;
    if (d.pair) {
      const dx = S.mouse[0] - d.from[0], dy = S.mouse[1] - d.from[1];
      const clamp = (p) => [Math.min(S.W - 1, Math.max(0, p[0] + dx)), Math.min(S.H - 1, Math.max(0, p[1] + dy))];
      S.points[d.i].handle = clamp(d.orig.handle);
      S.points[d.i].target = clamp(d.orig.target);
      d.xy = S.points[d.i][d.which];
    }
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
      if (d.pair) { msg.handle = S.points[d.i].handle; msg.target = S.points[d.i].target; }
      else { msg[d.which] = d.xy; S.points[d.i][d.which] = d.xy; }  // shown until the server's state arrives
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
    case "ArrowLeft": case "ArrowRight": case "ArrowUp": case "ArrowDown": {
      // nudge the selected pair's target 1 px (Shift: its handle)
      if (S.running || S.selected < 0 || !S.points[S.selected]) return;
      e.preventDefault();
      const which = e.shiftKey ? "handle" : "target";
      const [dx, dy] = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[key];
      const p = S.points[S.selected][which];
      const xy = [Math.min(S.W - 1, Math.max(0, p[0] + dx)), Math.min(S.H - 1, Math.max(0, p[1] + dy))];
      S.points[S.selected][which] = xy;
      send({ type: "move_point", index: S.selected, [which]: xy });
      draw();
      break;
    }
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
    const v = numberFrom(el.maxSteps, "Step cap");
    if (v === null) return;
    sendResync({ type: "options", max_steps: Number.isInteger(v) ? v : el.maxSteps.value });
  };
  for (const inp of optInputs) {
    inp.onchange = () => {
      let v = inp.value;
      if (inp.type === "checkbox") v = inp.checked;
      else if (inp.tagName === "INPUT") {
        const lim = S.st && S.st.option_limits ? S.st.option_limits[inp.dataset.opt] : null;
        const label = (inp.closest("label") && inp.closest("label").firstChild.textContent.trim()) || inp.dataset.opt;
        v = numberFrom(inp, label, !!(lim && lim.optional));
        if (v === null) return;
        if (v === undefined) v = null;  // empty: the engine's default ("auto")
      }
      if (inp.dataset.opt === "method") renderMethod(v);  // at once; the server's state confirms it
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
    const id = send({ type: "open", data: await f.text() });
    if (id) S.openRequest = { id, name: f.name };
  };
  const scaleSel = document.getElementById("dl-scale");
  if (scaleSel) scaleSel.onchange = updateLinks;
  const gx = document.getElementById("guide-close");
  if (gx) gx.onclick = dismissGuide;
  const gex = document.getElementById("guide-example");
  if (gex) gex.onclick = playExample;
  const replay = document.getElementById("replay-example");
  if (replay) replay.onclick = () => { el.help.close(); guide.on = true; renderGuide(); playExample(); };
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
