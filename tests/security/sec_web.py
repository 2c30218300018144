"""Web-app helpers for the security tests: a tiny model home, websocket tabs, a real uvicorn server."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from dragkit.formats import save_native
from dragkit.nets import Generator

RES = 32


def make_home(home: Path) -> Path:
    """``$DRAGKIT_HOME`` with a tiny random 32 px generator named ``tiny``."""
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=RES,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 256, "channel_max": 32})
    save_native(G, home / "tiny")
    return home


class Tab:
    """A websocket tab (TestClient) with helpers waiting for the reply to one message."""

    def __init__(self, ws: Any, cm: Any = None) -> None:
        self.ws, self.n, self.sid, self.state = ws, 0, None, None
        self.seen: list[dict] = []
        self._cm = cm

    def close(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)

    def send(self, **msg: Any) -> int:
        self.n += 1
        msg.setdefault("id", self.n)
        self.ws.send_text(json.dumps(msg))
        return msg["id"]

    def recv(self) -> dict:
        m = self.ws.receive_json()
        self.seen.append(m)
        if m["type"] == "frame":
            self.ws.send_text('{"type":"ack"}')
        if m["type"] == "state":
            self.state = m
        return m

    def until(self, kind: str, re: Any = None) -> dict:
        while True:
            m = self.recv()
            if m["type"] == kind and (re is None or m.get("re") == re):
                return m
            if m["type"] == "error" and kind != "error":
                raise AssertionError(f"unexpected error frame: {m}")

    def hello(self, **kw: Any) -> dict:
        i = self.send(type="hello", **kw)
        welcome = self.until("welcome", i)
        self.sid = welcome["session"]
        self.until("state", i)
        return welcome

    def do(self, **msg: Any) -> dict:
        return self.until("state", self.send(**msg))

    def error(self, **msg: Any) -> dict:
        i = self.send(**msg)
        while True:
            m = self.recv()
            if m["type"] == "error" and m.get("re") in (i, None):
                return m
            assert not (m["type"] == "state" and m.get("re") == i), f"expected an error, got {m}"

    def ping_seconds(self) -> float:
        t = time.perf_counter()
        i = self.send(type="ping")
        while True:
            m = self.recv()
            if m["type"] == "pong" and m.get("re") == i:
                return time.perf_counter() - t


@contextlib.contextmanager
def tabs(client: Any) -> Iterator[Any]:
    """``open_tab(**hello)`` inside the block; every tab is closed on the way out."""
    opened: list[Tab] = []

    def open_tab(**hello: Any) -> Tab:
        cm = client.websocket_connect("/ws")
        tab = Tab(cm.__enter__(), cm)
        opened.append(tab)
        tab.hello(**hello)
        return tab

    try:
        yield open_tab
    finally:
        for tab in reversed(opened):
            tab.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """The app under a real uvicorn (access log on, at info level) in a thread; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info", log_config=None, access_log=True,
                            lifespan="on", ws="websockets-sansio" if _has_sansio() else "auto")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _has_sansio() -> bool:
    try:
        import importlib

        importlib.import_module("uvicorn.protocols.websockets.websockets_sansio_impl")
        return True
    except ImportError:
        return False


def env_without_token() -> dict:
    return {k: v for k, v in os.environ.items() if k != "DRAGKIT_TOKEN"}
