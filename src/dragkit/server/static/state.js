// The page's state: one object every module reads and writes, and the DOM
// elements they use. The server is the source of truth: `S.st` is the last
// `state` frame, and everything the engine decides (distances, which pairs
// have arrived, the stop distance, option bounds) is read from it or from
// the live `frame`s, never recomputed here.

const $ = (id) => document.getElementById(id);

export const el = {
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
export const optInputs = [...document.querySelectorAll("[data-opt]")];

export const S = {
  ws: null, sid: sessionStorage.getItem("dragkit.session"), connected: false, retry: 0,
  st: null,            // the last `state` frame
  W: 0, H: 0,          // image size, pixels
  points: [],          // [{handle, target}], as the server has them (moved locally while dragged)
  mask: null,          // Uint8Array(W * H), 1 = flexible
  imageRev: -1, limits: null,
  tool: "points", pending: null, dragging: null, selected: -1,
  running: false,
  live: null,          // during a drag: {points, targets, step, distances, arrived} of the last frame
  trail: [], showMask: true, radius: 6,
  painting: null, mouse: null, nextId: 1,
  resync: new Set(),   // ids of messages whose refusal must put the inputs back as the server has them
  lastOutcome: null,
  metrics: { startClickAt: null, firstFrameAt: null, firstDrawnAt: null, frameTimes: [], drawnTimes: [], frames: 0 },
};

// The engine's view of pair i: distance to its target and whether it has arrived
// (within the stop distance), from the live frame during a drag, else from the state.
export function pairStatus(i) {
  const src = S.live && S.live.distances ? S.live : S.st;
  if (!src || !src.distances || src.distances[i] === undefined) return null;
  return { distance: src.distances[i], arrived: !!(src.arrived && src.arrived[i]) };
}

export const fmt = (xy) => `(${(+xy[0]).toFixed(1)}, ${(+xy[1]).toFixed(1)})`;

export function resetMetrics(startClickAt = null) {
  S.metrics = { startClickAt, firstFrameAt: null, firstDrawnAt: null, frameTimes: [], drawnTimes: [], frames: 0 };
}
