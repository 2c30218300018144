// dragkit drag editor: plain JS, no build step, nothing fetched from elsewhere.
// The server is the source of truth: every action goes over the websocket
// and the page redraws from the `state` message that answers it.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    model: $("model"), seed: $("seed"), psi: $("psi"), randomSeed: $("random-seed"), newImage: $("new-image"),
    conn: $("conn"), helpBtn: $("help-btn"), help: $("help"),
    tools: [...document.querySelectorAll(".tool")], radius: $("radius"), radiusOut: $("radius-out"),
    showMask: $("show-mask"), clearMask: $("clear-mask"), undo: $("undo"), redo: $("redo"),
    stage: $("stage"), image: $("image"), overlay: $("overlay"), hint: $("stage-hint"),
    runState: $("run-state"), stepInfo: $("step-info"), distInfo: $("dist-info"), resInfo: $("res-info"),
    start: $("start"), stop: $("stop"), maxSteps: $("max-steps"),
    points: $("points"), pointsEmpty: $("points-empty"), clearPoints: $("clear-points"),
    dlPng: $("dl-png"), dlMp4: $("dl-mp4"), dlGif: $("dl-gif"), dlSession: $("dl-session"), openFile: $("open-file"),
    toasts: $("toasts"),
  };
  const optInputs = [...document.querySelectorAll("[data-opt]")];

  // ------------------------------------------------------------------ state
  // The token travels only in the HttpOnly cookie the login page obtained
  // (never in a URL this page builds); drop a #token=... left in the address.
  if (location.hash.includes("token=")) history.replaceState(null, "", location.pathname + location.search);
  sessionStorage.removeItem("dragkit.token");  // older versions kept it here
  const S = {
    ws: null, sid: sessionStorage.getItem("dragkit.session"), connected: false, retry: 0,
    st: null, R: 0, points: [], mask: null, imageRev: -1, limits: null,
    tool: "points", pending: null, dragging: null, selected: -1, hover: null,
    running: false, live: null, trail: [], showMask: true, radius: 6,
    painting: null, mouse: null, nextId: 1, pendingOptions: new Set(),
    lastOutcome: null,
    metrics: { startClickAt: null, firstFrameAt: null, firstDrawnAt: null, frameTimes: [], drawnTimes: [], frames: 0 },
  };
  const maskCanvas = document.createElement("canvas");  // R x R tinted mask

  // --------------------------------------------------------------- network
  function wsUrl() {
    const u = new URL("ws", location.href);
    u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    u.hash = "";
    return u.toString();
  }
  function apiUrl(path) {
    const u = new URL(path, location.href);
    u.hash = "";
    return u.toString();
  }
  function send(msg) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) { toast("Not connected to the server; retrying…"); return null; }
    msg.id = S.nextId++;
    if (!["stop", "state", "ping", "start"].includes(msg.type)) S.trail = [];  // the last drag's paths go with the next edit
    S.ws.send(JSON.stringify(msg));
    return msg.id;
  }
  function connect() {
    setConn(false, "connecting…");
    const ws = new WebSocket(wsUrl());
    S.ws = ws;
    ws.onopen = () => {
      S.retry = 0;
      const hello = { type: "hello", id: S.nextId++ };
      if (S.sid) hello.session = S.sid;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      const h = handlers[msg.type];
      if (h) h(msg);
    };
    ws.onclose = (ev) => {
      S.connected = false;
      if (S.ws !== ws) return;
      const wait = Math.min(3000, 300 * 2 ** S.retry++);
      setConn(false, ev.code === 1013 ? "too many tabs" : "reconnecting…");
      // A refused handshake looks like any lost connection; if the cookie no
      // longer opens the server (restarted with another token), show the login page.
      if (S.retry > 2) fetch(apiUrl("api/health"), { credentials: "same-origin" })
        .then((r) => { if (r.status === 401) location.reload(); }).catch(() => {});
      setTimeout(connect, ev.code === 1013 ? 5000 : wait);
    };
  }
  function setConn(on, text) {
    el.conn.className = "conn " + (on ? "on" : "off");
    el.conn.textContent = text;
  }

  const handlers = {
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
        o.textContent = `${mi.name}${mi.resolution ? ` · ${mi.resolution}px` : ""}${mi.source === "cache" ? " (cache)" : ""}`;
        el.model.appendChild(o);
      }
      if (m.resumed === "resumed") toast("Reopened your edit where you left it.", "info");
      if (m.resumed === "copied") toast("This edit is open in another tab; this tab works on a copy.", "info");
      updateLinks();
    },
    state(m) { applyState(m); },
    started(m) {
      S.running = true;
      S.live = { points: m.points.map((p) => p.handle), step: 0, distances: null };
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
      S.live = { points: m.points, targets: m.targets, step: m.step, distances: m.distances };
      m.points.forEach((p, i) => { (S.trail[i] = S.trail[i] || []).push(p.slice()); });
      showImage(m.image).then(() => {
        draw();
        const t = performance.now();
        if (S.metrics.firstDrawnAt === null) S.metrics.firstDrawnAt = t;
        S.metrics.drawnTimes.push(t);
        if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send('{"type":"ack"}');
      });
      el.stepInfo.textContent = `step ${m.step} / ${S.st ? S.st.max_steps : "?"}`;
      showDistances(m.distances);
    },
    done(m) {
      S.running = false;
      S.live = null;
      S.lastOutcome = m;
      if (m.points) m.points.forEach((p, i) => { if (S.trail[i]) S.trail[i].push(p.slice()); });
      const label = { reached: "reached", max_steps: "step cap", stopped: "stopped", converged: "stopped", error: "failed" }[m.reason] || m.reason;
      setRunState(m.reason === "reached" ? "reached" : "stopped", label);
      el.stepInfo.textContent = `${m.steps} steps · ${m.seconds}s`;
      if (m.distances) showDistances(m.distances);
      if (m.reason === "max_steps") toast(`Stopped at the step cap (${m.steps} steps) before every handle arrived.`, "info");
    },
    error(m) {
      toast(m.message);
      if (m.re !== undefined && S.pendingOptions.has(m.re)) {
        S.pendingOptions.delete(m.re);
        send({ type: "state" });  // put the option inputs back as the server has them
      }
    },
    pong() {},
  };

  // ----------------------------------------------------------------- state
  function applyState(m) {
    if (m.re !== undefined) S.pendingOptions.delete(m.re);
    S.st = m;
    S.running = m.running;
    if (!m.running) S.live = null;
    if (m.resolution && m.resolution !== S.R) {
      S.R = m.resolution;
      maskCanvas.width = maskCanvas.height = S.R;
      layout();
    }
    S.points = m.points.map((p) => ({ handle: p.handle.slice(), target: p.target.slice() }));
    if (S.selected >= S.points.length) S.selected = S.points.length - 1;
    if (document.activeElement !== el.seed && m.seed !== null) el.seed.value = m.seed;
    if (document.activeElement !== el.psi && m.psi !== null) el.psi.value = m.psi;
    if (m.model) el.model.value = m.model;
    if (document.activeElement !== el.maxSteps) el.maxSteps.value = m.max_steps;
    for (const inp of optInputs) {
      if (document.activeElement === inp) continue;
      const v = m.options[inp.dataset.opt];
      inp.value = v === null || v === undefined ? "" : v;
      const auto = m.options_resolved ? m.options_resolved[inp.dataset.opt] : undefined;
      if (inp.tagName === "INPUT" && auto !== undefined && auto !== null) inp.placeholder = `auto (${typeof auto === "number" ? +auto.toFixed(3) : auto})`;
    }
    if (m.num_ws) $("opt-layers").max = m.num_ws;
    if (m.resolution) { $("opt-r1").max = m.resolution / 2; $("opt-r2").max = Math.floor(m.resolution / 2); }  // the engine's bound
    el.resInfo.textContent = m.model ? `${m.model} · ${m.resolution}×${m.resolution}` : "no model";
    if (m.image) { S.imageRev = m.image_rev; S.pending = null; showImage(m.image).then(draw); }
    decodeMask(m.mask).then(draw);
    if (!m.running && el.runState.classList.contains("running")) setRunState("idle", "idle");
    renderControls();
    renderPoints();
    updateLinks();
    draw();
  }

  function showImage(url) {
    el.image.src = url;
    return el.image.decode().catch(() => {});
  }

  function decodeMask(url) {
    if (!url) { S.mask = null; renderMaskCanvas(); return Promise.resolve(); }
    return new Promise((resolve) => {
      const img = new Image();
      img.onload = () => {
        const c = document.createElement("canvas");
        c.width = c.height = S.R;
        const ctx = c.getContext("2d");
        ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, S.R, S.R).data;
        const m = new Uint8Array(S.R * S.R);
        for (let i = 0; i < m.length; i++) m[i] = d[i * 4] > 127 ? 1 : 0;
        S.mask = m;
        renderMaskCanvas();
        resolve();
      };
      img.onerror = () => resolve();
      img.src = url;
    });
  }

  function renderMaskCanvas() {
    if (!S.R) return;
    const ctx = maskCanvas.getContext("2d");
    const img = ctx.createImageData(S.R, S.R);
    if (S.mask) {
      for (let i = 0; i < S.mask.length; i++) {
        // Flexible region: a light green wash; fixed region: dimmed.
        if (S.mask[i]) { img.data[i * 4] = 80; img.data[i * 4 + 1] = 230; img.data[i * 4 + 2] = 170; img.data[i * 4 + 3] = 38; }
        else { img.data[i * 4] = 8; img.data[i * 4 + 1] = 10; img.data[i * 4 + 2] = 14; img.data[i * 4 + 3] = 125; }
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  function maskPngBase64() {
    const c = document.createElement("canvas");
    c.width = c.height = S.R;
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(S.R, S.R);
    for (let i = 0; i < S.mask.length; i++) {
      const v = S.mask[i] ? 255 : 0;
      img.data[i * 4] = img.data[i * 4 + 1] = img.data[i * 4 + 2] = v;
      img.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return c.toDataURL("image/png");
  }

  // -------------------------------------------------------------- controls
  function setRunState(cls, text) {
    el.runState.className = "pill " + cls;
    el.runState.textContent = text;
  }
  function renderControls() {
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
  function renderPoints() {
    el.points.innerHTML = "";
    el.pointsEmpty.style.display = S.points.length ? "none" : "";
    const dists = S.live && S.live.distances ? S.live.distances : null;
    S.points.forEach((p, i) => {
      const li = document.createElement("li");
      if (i === S.selected) li.classList.add("selected");
      const h = S.live && S.live.points[i] ? S.live.points[i] : p.handle;
      const d = dists ? dists[i] : Math.hypot(p.target[0] - h[0], p.target[1] - h[1]);
      const ok = d <= 2;
      li.innerHTML = `<span class="n">${i + 1}</span><span class="coords"><span class="red">●</span> ${fmt(h)} → <span class="blue">●</span> ${fmt(p.target)}</span><span class="d${ok ? " ok" : ""}">${d.toFixed(1)} px</span>`;
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
  function fmt(xy) { return `(${(+xy[0]).toFixed(1)}, ${(+xy[1]).toFixed(1)})`; }
  function showDistances(d) {
    if (!d || !d.length) { el.distInfo.textContent = ""; return; }
    el.distInfo.textContent = "distance " + d.map((x) => x.toFixed(1)).join(" · ") + " px";
    if (S.live) renderPoints();
  }
  function updateLinks() {
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

  function toast(text, kind) {
    const t = document.createElement("div");
    t.className = "toast" + (kind ? " " + kind : "");
    t.textContent = text;
    t.setAttribute("role", kind === "info" ? "status" : "alert");
    el.toasts.appendChild(t);
    setTimeout(() => t.remove(), kind === "info" ? 3500 : 6000);
    while (el.toasts.children.length > 4) el.toasts.firstChild.remove();
  }

  // ---------------------------------------------------------------- layout
  let size = 0;
  function layout() {
    if (!S.R) return;
    const wrap = el.stage.parentElement;
    const avail = Math.max(64, Math.min(wrap.clientWidth, wrap.clientHeight) - 24);
    // Whole multiples of the model's size keep upscaled pixels square and crisp.
    size = avail >= S.R ? Math.floor(avail / S.R) * S.R : avail;
    el.stage.style.width = el.stage.style.height = size + "px";
    const dpr = window.devicePixelRatio || 1;
    el.overlay.width = el.overlay.height = Math.round(size * dpr);
    draw();
  }
  window.addEventListener("resize", layout);

  const toScreen = (xy) => [(xy[0] + 0.5) * size / S.R, (xy[1] + 0.5) * size / S.R];
  function toImage(ev) {
    const r = el.overlay.getBoundingClientRect();
    const x = (ev.clientX - r.left) / r.width * S.R - 0.5;
    const y = (ev.clientY - r.top) / r.height * S.R - 0.5;
    const c = (v) => Math.round(Math.min(S.R - 1, Math.max(0, v)) * 100) / 100;
    return [c(x), c(y)];
  }

  // ------------------------------------------------------------------ draw
  const drawn = { handles: [], targets: [] };
  function draw() {
    if (!S.R || !size) return;
    const ctx = el.overlay.getContext("2d");
    const dpr = el.overlay.width / size;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, size, size);
    if (S.showMask && S.mask) {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(maskCanvas, 0, 0, size, size);
    }
    const pts = S.points.map((p, i) => ({
      handle: S.dragging && S.dragging.i === i && S.dragging.which === "handle" ? S.dragging.xy
        : (S.live && S.live.points[i] ? S.live.points[i] : p.handle),
      target: S.dragging && S.dragging.i === i && S.dragging.which === "target" ? S.dragging.xy : p.target,
    }));
    const scale = Math.max(1, size / 512);
    // Paths of the tracked handles, while a drag runs and after it.
    if (S.trail.length) {
      ctx.lineWidth = 2 * scale;
      ctx.strokeStyle = "rgba(255,255,255,.55)";
      ctx.setLineDash([3 * scale, 3 * scale]);
      for (const tr of S.trail) {
        if (!tr || tr.length < 2) continue;
        ctx.beginPath();
        tr.forEach((p, k) => { const [x, y] = toScreen(p); k ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
        ctx.stroke();
      }
      ctx.setLineDash([]);
    }
    pts.forEach((p, i) => arrow(ctx, toScreen(p.handle), toScreen(p.target), scale, i === S.selected));
    pts.forEach((p, i) => {
      dot(ctx, toScreen(p.target), "#3b82f6", scale, i === S.selected);
      dot(ctx, toScreen(p.handle), "#ef4444", scale, i === S.selected);
    });
    drawn.handles = pts.map((p) => p.handle.slice());
    drawn.targets = pts.map((p) => p.target.slice());
    if (S.pending) {
      const [x, y] = toScreen(S.pending);
      dot(ctx, [x, y], "#ef4444", scale, false);
      ctx.strokeStyle = "rgba(239,68,68,.8)";
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(x, y, 11 * scale, 0, 2 * Math.PI); ctx.stroke();
      ctx.setLineDash([]);
      if (S.mouse) {
        ctx.strokeStyle = "rgba(255,255,255,.5)";
        ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(...toScreen(S.mouse)); ctx.stroke();
      }
    }
    if ((S.tool === "brush" || S.tool === "erase") && S.mouse && !S.running) {
      const [x, y] = toScreen(S.mouse);
      ctx.strokeStyle = S.tool === "erase" ? "#f59e0b" : "#38dca0";
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(x, y, S.radius * size / S.R, 0, 2 * Math.PI); ctx.stroke();
    }
  }
  function dot(ctx, [x, y], color, scale, selected) {
    const r = 6 * scale;
    ctx.beginPath(); ctx.arc(x, y, r + 2 * scale, 0, 2 * Math.PI);
    ctx.fillStyle = selected ? "#fde047" : "#ffffff"; ctx.fill();
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = color; ctx.fill();
  }
  function arrow(ctx, [x0, y0], [x1, y1], scale, selected) {
    const dx = x1 - x0, dy = y1 - y0, len = Math.hypot(dx, dy);
    if (len < 1) return;
    const ux = dx / len, uy = dy / len, head = Math.min(12 * scale, len * 0.5), stopAt = 8 * scale;
    const ex = x1 - ux * stopAt, ey = y1 - uy * stopAt;
    for (const [w, c] of [[5 * scale, "rgba(0,0,0,.55)"], [2.5 * scale, selected ? "#fde047" : "#ffffff"]]) {
      ctx.strokeStyle = c; ctx.fillStyle = c; ctx.lineWidth = w; ctx.lineCap = "round";
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(ex - ux * head * 0.6, ey - uy * head * 0.6); ctx.stroke();
      ctx.beginPath();
      ctx.moveTo(ex, ey);
      ctx.lineTo(ex - ux * head - uy * head * 0.55, ey - uy * head + ux * head * 0.55);
      ctx.lineTo(ex - ux * head + uy * head * 0.55, ey - uy * head - ux * head * 0.55);
      ctx.closePath(); ctx.fill();
    }
  }

  // --------------------------------------------------------------- pointer
  function hitTest(ev) {
    const r = el.overlay.getBoundingClientRect();
    const sx = ev.clientX - r.left, sy = ev.clientY - r.top;
    const tol = 10 * Math.max(1, size / 512);
    let best = null;
    S.points.forEach((p, i) => {
      for (const which of ["target", "handle"]) {
        const [x, y] = toScreen(p[which]);
        const d = Math.hypot(x - sx, y - sy);
        if (d <= tol && (!best || d < best.d)) best = { i, which, d };
      }
    });
    return best;
  }

  el.overlay.addEventListener("contextmenu", (ev) => {
    ev.preventDefault();
    if (S.running || S.tool !== "points") return;
    const hit = hitTest(ev);
    if (hit) send({ type: "remove_point", index: hit.i });
  });

  el.overlay.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 || S.running || !S.R || !S.st || !S.st.model) return;
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
      if (!S.mask) S.mask = new Uint8Array(S.R * S.R);
      S.painting = { last: xy, value: S.tool === "brush" ? 1 : 0 };
      stamp(xy, S.painting.value);
    }
  });

  el.overlay.addEventListener("pointermove", (ev) => {
    if (!S.R) return;
    S.mouse = toImage(ev);
    if (S.dragging) {
      S.dragging.xy = S.mouse;
      S.dragging.moved = true;
    } else if (S.painting) {
      const [x0, y0] = S.painting.last, [x1, y1] = S.mouse;
      const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / Math.max(0.5, S.radius / 2)));
      for (let k = 1; k <= n; k++) stamp([x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n], S.painting.value);
      S.painting.last = S.mouse;
    }
    draw();
  });
  el.overlay.addEventListener("pointerleave", () => { S.mouse = null; draw(); });

  function endPointer() {
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
      send({ type: "set_mask", mask: S.mask.some((v) => v) ? maskPngBase64() : null });
    }
  }
  el.overlay.addEventListener("pointerup", endPointer);
  el.overlay.addEventListener("pointercancel", endPointer);

  function stamp([cx, cy], value) {
    const r = S.radius, R = S.R;
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(R - 1, Math.ceil(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(R - 1, Math.ceil(cy + r));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        // r - 0.5: no lone pixels poking out at the four tips of each stamp.
        if ((x - cx) ** 2 + (y - cy) ** 2 <= (r - 0.5) ** 2 || r <= 1 && Math.abs(x - cx) < 1 && Math.abs(y - cy) < 1) S.mask[y * R + x] = value;
      }
    }
    renderMaskCanvas();
  }

  // -------------------------------------------------------------- commands
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
    // Timings for benchmarks/bench_app.py: click -> first frame received / drawn.
    S.metrics = { startClickAt: performance.now(), firstFrameAt: null, firstDrawnAt: null, frameTimes: [], drawnTimes: [], frames: 0 };
    S.lastOutcome = null;
    send({ type: "start", max_steps: +el.maxSteps.value || undefined });
  }
  function stop() { if (S.running) send({ type: "stop" }); }
  function undo() {
    if (S.pending) { S.pending = null; renderControls(); draw(); return; }
    if (!el.undo.disabled) send({ type: "undo" });
  }
  function redo() { if (!el.redo.disabled) send({ type: "redo" }); }
  function newImage(seed) {
    const s = seed === undefined ? +el.seed.value : seed;
    if (!Number.isInteger(s) || s < 0 || s > 4294967295) { toast("Seed must be a whole number from 0 to 4294967295."); return; }
    el.seed.value = s;
    send({ type: "new", model: el.model.value, seed: s, psi: +el.psi.value });
  }
  function randomSeed() { newImage(Math.floor(Math.random() * 100000)); }
  function downloadSession() { if (!el.dlSession.classList.contains("disabled")) el.dlSession.click(); }

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
    const id = send({ type: "options", max_steps: Number.isInteger(v) ? v : el.maxSteps.value });
    if (id) S.pendingOptions.add(id);
  };
  for (const inp of optInputs) {
    inp.onchange = () => {
      const key = inp.dataset.opt;
      let v = inp.value;
      if (inp.tagName === "INPUT") v = v === "" ? null : +v;
      const id = send({ type: "options", options: { [key]: v } });
      if (id) S.pendingOptions.add(id);
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

  document.addEventListener("keydown", (e) => {
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
      case "Escape": if (S.pending) { S.pending = null; renderControls(); draw(); } else stop(); break;
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
  });

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
    toScreen: (xy) => { const r = el.overlay.getBoundingClientRect(); const [x, y] = toScreen(xy); return [r.left + x, r.top + y]; },
  };

  setTool("points");
  setRadius(6);
  connect();
})();
