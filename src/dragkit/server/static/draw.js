// The stage: its size on screen, image <-> screen coordinates, and the
// overlay canvas (mask tint, point pairs, arrows, the tracked handles' paths).

import { S, el } from "./state.js";

let k = 0;  // screen pixels per image pixel
const maskCanvas = document.createElement("canvas");  // W x H tinted mask
export const drawn = { handles: [], targets: [], trails: [] };  // what the overlay shows (tests read it)

// The path drawn for a tracked handle: its positions (integer pixels from the tracker, one per
// shown frame) without repeats, smoothed by three passes of the [1, 2, 1] / 4 filter with the ends
// held (each end is mirrored through itself, so the first and last points stay exactly where they
// were). Display only: the handle's dot, the points list and the engine keep the tracked positions.
// The filter removes a one-pixel back-and-forth of the tracker (it never adds a turn to a path,
// as smoothing by a positive bell-shaped kernel cannot); a real detour of several frames stays.
export function smoothTrail(points, passes = 3) {
  const raw = [];
  for (const p of points || []) {
    const q = raw[raw.length - 1];
    if (!q || q[0] !== p[0] || q[1] !== p[1]) raw.push([+p[0], +p[1]]);
  }
  if (raw.length < 3) return raw;
  let cur = raw;
  for (let k = 0; k < passes; k++) {
    const n = cur.length, next = new Array(n);
    next[0] = cur[0].slice();
    next[n - 1] = cur[n - 1].slice();
    for (let i = 1; i < n - 1; i++) {
      next[i] = [(cur[i - 1][0] + 2 * cur[i][0] + cur[i + 1][0]) / 4, (cur[i - 1][1] + 2 * cur[i][1] + cur[i + 1][1]) / 4];
    }
    cur = next;
  }
  return cur;
}

// The image size changed (a new model): resize the mask canvas and the stage.
export function setImageSize(W, H) {
  S.W = W;
  S.H = H;
  maskCanvas.width = W;
  maskCanvas.height = H;
  layout();
}

export function layout() {
  if (!S.W) return;
  const wrap = el.stage.parentElement;
  const fit = Math.max(64 / Math.max(S.W, S.H), Math.min((wrap.clientWidth - 24) / S.W, (wrap.clientHeight - 24) / S.H));
  // Whole multiples of the model's size keep upscaled pixels square and crisp.
  k = fit >= 1 ? Math.floor(fit) : fit;
  el.stage.style.width = S.W * k + "px";
  el.stage.style.height = S.H * k + "px";
  const dpr = window.devicePixelRatio || 1;
  el.overlay.width = Math.round(S.W * k * dpr);
  el.overlay.height = Math.round(S.H * k * dpr);
  draw();
}

export const toScreen = (xy) => [(xy[0] + 0.5) * k, (xy[1] + 0.5) * k];
const markerScale = () => Math.max(1, Math.max(S.W, S.H) * k / 512);

// Pointer event -> image pixel [x, y], clamped to the image, 0.01 px steps.
export function toImage(ev) {
  const r = el.overlay.getBoundingClientRect();
  const x = (ev.clientX - r.left) / r.width * S.W - 0.5;
  const y = (ev.clientY - r.top) / r.height * S.H - 0.5;
  const c = (v, n) => Math.round(Math.min(n - 1, Math.max(0, v)) * 100) / 100;
  return [c(x, S.W), c(y, S.H)];
}

// The point (pair index and which end) under the pointer, if any.
export function hitTest(ev) {
  const r = el.overlay.getBoundingClientRect();
  const sx = ev.clientX - r.left, sy = ev.clientY - r.top;
  const tol = 10 * markerScale();
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

export function draw() {
  if (!S.W || !k) return;
  const ctx = el.overlay.getContext("2d");
  const w = S.W * k, h = S.H * k;
  const dpr = el.overlay.width / w;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  if (S.showMask && S.mask) {
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(maskCanvas, 0, 0, w, h);
  }
  const pts = S.points.map((p, i) => ({
    handle: S.dragging && S.dragging.i === i && S.dragging.which === "handle" ? S.dragging.xy
      : (S.live && S.live.points[i] ? S.live.points[i] : p.handle),
    target: S.dragging && S.dragging.i === i && S.dragging.which === "target" ? S.dragging.xy : p.target,
  }));
  const scale = markerScale();
  drawn.trails = [];
  if (S.trail.length) {  // paths of the tracked handles (smoothed for display), while a drag runs and after it
    ctx.lineWidth = 2 * scale;
    ctx.strokeStyle = "rgba(255,255,255,.55)";
    ctx.setLineDash([3 * scale, 3 * scale]);
    ctx.lineJoin = "round";
    for (const tr of S.trail) {
      const path = smoothTrail(tr);
      drawn.trails.push(path);
      if (path.length < 2) continue;
      ctx.beginPath();
      path.forEach((p, j) => { const [x, y] = toScreen(p); j ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
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
    ctx.beginPath(); ctx.arc(x, y, S.radius * k, 0, 2 * Math.PI); ctx.stroke();
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

// -- the mask -----------------------------------------------------------------

export function renderMask() {
  if (!S.W) return;
  const ctx = maskCanvas.getContext("2d");
  const img = ctx.createImageData(S.W, S.H);
  if (S.mask) {
    for (let i = 0; i < S.mask.length; i++) {
      // Flexible region: a light green wash; fixed region: dimmed.
      if (S.mask[i]) { img.data[i * 4] = 80; img.data[i * 4 + 1] = 230; img.data[i * 4 + 2] = 170; img.data[i * 4 + 3] = 38; }
      else { img.data[i * 4] = 8; img.data[i * 4 + 1] = 10; img.data[i * 4 + 2] = 14; img.data[i * 4 + 3] = 125; }
    }
  }
  ctx.putImageData(img, 0, 0);
}

// A mask PNG (data URL from the server, or null) -> S.mask.
export function decodeMask(url) {
  if (!url) { S.mask = null; renderMask(); return Promise.resolve(); }
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = S.W; c.height = S.H;
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, S.W, S.H).data;
      const m = new Uint8Array(S.W * S.H);
      for (let i = 0; i < m.length; i++) m[i] = d[i * 4] > 127 ? 1 : 0;
      S.mask = m;
      renderMask();
      resolve();
    };
    img.onerror = () => resolve();
    img.src = url;
  });
}

// S.mask -> a PNG data URL (white = flexible), as set_mask takes it.
export function maskPng() {
  const c = document.createElement("canvas");
  c.width = S.W; c.height = S.H;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(S.W, S.H);
  for (let i = 0; i < S.mask.length; i++) {
    const v = S.mask[i] ? 255 : 0;
    img.data[i * 4] = img.data[i * 4 + 1] = img.data[i * 4 + 2] = v;
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c.toDataURL("image/png");
}

// Paint (value 1) or erase (0) a disk of the brush radius at image pixel [cx, cy].
export function stamp([cx, cy], value) {
  const r = S.radius, W = S.W, H = S.H;
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(W - 1, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(H - 1, Math.ceil(cy + r));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      // r - 0.5: no lone pixels poking out at the four tips of each stamp.
      if ((x - cx) ** 2 + (y - cy) ** 2 <= (r - 0.5) ** 2 || r <= 1 && Math.abs(x - cx) < 1 && Math.abs(y - cy) < 1) S.mask[y * W + x] = value;
    }
  }
  renderMask();
}
