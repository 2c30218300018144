// The websocket: connect (and reconnect), send a message, hand each frame
// from the server to its handler. The protocol is documented in docs/app.md.

import { S } from "./state.js";

let handlers = {};
let onStatus = () => {};
let onOffline = () => {};

function url(path, proto) {
  const u = new URL(path, location.href);
  if (proto) u.protocol = proto;
  u.hash = "";
  return u.toString();
}

export const apiUrl = (path) => url(path);

// Send one client message (an id is added); null when not connected.
export function send(msg) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) { onOffline(); return null; }
  msg.id = S.nextId++;
  if (!["stop", "state", "ping", "start"].includes(msg.type)) S.trail = [];  // the last drag's paths go with the next edit
  S.ws.send(JSON.stringify(msg));
  return msg.id;
}

// Flow control: tell the server a frame was drawn.
export function ack() {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send('{"type":"ack"}');
}

// `frameHandlers`: {type: fn(msg)}; `status(on, text)` shows the connection; `offline()` a send without one.
export function connect(frameHandlers, status, offline) {
  handlers = frameHandlers;
  onStatus = status;
  onOffline = offline;
  open();
}

function open() {
  onStatus(false, "connecting…");
  const ws = new WebSocket(url("ws", location.protocol === "https:" ? "wss:" : "ws:"));
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
    onStatus(false, ev.code === 1013 ? "too many tabs" : "reconnecting…");
    // A refused handshake looks like any lost connection; if the cookie no
    // longer opens the server (restarted with another token), show the login page.
    if (S.retry > 2) fetch(apiUrl("api/health"), { credentials: "same-origin" })
      .then((r) => { if (r.status === 401) location.reload(); }).catch(() => {});
    setTimeout(open, ev.code === 1013 ? 5000 : wait);
  };
}
