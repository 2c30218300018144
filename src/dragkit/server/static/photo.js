// Your own photo: upload (file picker, or a file dropped on the image), the
// options (align the face, pivotal tuning), the inversion's progress bar and
// Cancel, and the before/after view (the photo as the model sees it vs its
// reconstruction) with the PSNR. The server inverts it on its compute queue
// (docs/app.md, "Your own photo"); the tab's edit becomes the photo when it
// is done, and a failure leaves the open edit as it was.

import { S } from "./state.js";
import { apiUrl, send } from "./socket.js";

const $ = (id) => document.getElementById(id);
const ui = {
  input: $("upload-photo"), label: $("upload-photo-label"), align: $("photo-align"), pti: $("photo-pti"),
  progress: $("invert-progress"), bar: $("invert-bar"), text: $("invert-text"), cancel: $("invert-cancel"),
  card: $("photo-card"), before: $("photo-before"), after: $("photo-after"), psnr: $("photo-psnr"),
  stageWrap: document.querySelector(".stage-wrap"),
};
const PHASES = { start: "reading the photo", w: "projecting (W)", "w+": "projecting (W+)", pti: "fine-tuning (PTI)" };
let toast = () => {};
let shownKey = null;
export const photoView = { uploading: false, lastError: null, lastResult: null, progress: null };

function showProgress(p) {
  photoView.progress = p;
  if (!p) { ui.progress.classList.add("hidden"); return; }
  ui.progress.classList.remove("hidden");
  const frac = p.steps ? p.step / p.steps : 0;
  ui.bar.style.width = `${Math.round(frac * 100)}%`;
  const psnr = p.psnr !== null && p.psnr !== undefined ? ` · ${(+p.psnr).toFixed(1)} dB` : "";
  ui.text.textContent = p.cancelling ? "cancelling…"
    : `${PHASES[p.phase] || p.phase}${p.steps ? ` ${p.step}/${p.steps}` : ""}${psnr}`;
  ui.cancel.disabled = !!p.cancelling;
}

// The server's progress frame (one per step, throttled).
export function onProgress(m) { showProgress(m); }

// Called with every state frame: the progress (after a reload) and the before/after view.
export function renderPhoto(st) {
  if (st.inverting) showProgress(st.inverting);
  else if (!photoView.uploading) showProgress(null);
  ui.label.classList.toggle("disabled", !!st.inverting || photoView.uploading || !S.connected);
  const ph = st.photo;
  if (!ph) { ui.card.classList.add("hidden"); shownKey = null; return; }
  ui.card.classList.remove("hidden");
  ui.psnr.textContent = `PSNR ${(+ph.psnr).toFixed(2)} dB${ph.pti ? ` (projection ${(+ph.psnr_projection).toFixed(2)} dB, then PTI)` : ""}`
    + (ph.warnings && ph.warnings.length ? ` · ${ph.warnings.join(" ")}` : "");
  const key = `${S.sid}|${ph.psnr}|${ph.ssim}|${ph.psnr_projection}`;  // this photo edit (not each drag)
  if (ph.files && key !== shownKey) {
    shownKey = key;
    const t = Date.now();
    ui.before.src = apiUrl(`api/sessions/${S.sid}/photo/photo.png?t=${t}`);
    ui.after.src = apiUrl(`api/sessions/${S.sid}/photo/reconstruction.png?t=${t}`);
  }
}

async function upload(file) {
  if (!file || photoView.uploading) return;
  if (!S.sid || !S.connected) { toast("Not connected to the server."); return; }
  const limit = S.limits && S.limits.max_photo_bytes;
  if (limit && file.size > limit) {
    toast(`That photo is ${(file.size / 1048576).toFixed(1)} MiB; the limit is ${(limit / 1048576).toFixed(0)} MiB.`);
    return;
  }
  photoView.uploading = true;
  photoView.lastError = null;
  photoView.lastResult = null;
  ui.label.classList.add("disabled");
  showProgress({ phase: "start", step: 0, steps: 0, psnr: null });
  const q = new URLSearchParams({ align: ui.align.checked ? "true" : "false", pti: ui.pti.checked ? "true" : "false" });
  try {
    const r = await fetch(apiUrl(`api/sessions/${S.sid}/upload-image?${q}`), {
      method: "POST", body: file, credentials: "same-origin",
      headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    let body = {};
    try { body = await r.json(); } catch { body = {}; }
    if (r.ok) {
      photoView.lastResult = body;
      toast(`Photo inverted: PSNR ${(+body.psnr).toFixed(1)} dB. Place points to drag it.`, "info");
      for (const w of body.warnings || []) toast(w, "info");
    } else {
      photoView.lastError = body.error || `upload failed (HTTP ${r.status})`;
      if (r.status === 409 && /cancelled/.test(photoView.lastError)) toast("Inversion cancelled; your edit is unchanged.", "info");
      else toast(photoView.lastError);
    }
  } catch (e) {
    photoView.lastError = "the upload failed (connection lost)";
    toast(photoView.lastError);
  } finally {
    photoView.uploading = false;
    ui.label.classList.remove("disabled");
    showProgress(S.st && S.st.inverting ? S.st.inverting : null);
  }
}

export function bindPhoto(toastFn) {
  toast = toastFn;
  ui.input.onchange = () => {
    const f = ui.input.files[0];
    ui.input.value = "";
    upload(f);
  };
  ui.cancel.onclick = () => { send({ type: "cancel_invert" }); };
  // Drag-and-drop of an image file onto the stage.
  const has = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
  ui.stageWrap.addEventListener("dragover", (ev) => {
    if (!has(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "copy";
    ui.stageWrap.classList.add("dropping");
  });
  ui.stageWrap.addEventListener("dragleave", () => ui.stageWrap.classList.remove("dropping"));
  ui.stageWrap.addEventListener("drop", (ev) => {
    ui.stageWrap.classList.remove("dropping");
    if (!has(ev)) return;
    ev.preventDefault();
    const f = ev.dataTransfer.files[0];
    if (f && f.name.toLowerCase().endsWith(".json")) { toast("That is a session file: use “Open session…”."); return; }
    upload(f);
  });
}
