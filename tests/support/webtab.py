"""A websocket tab of the web app (a TestClient websocket) with helpers that wait for the reply to one
message: the one definition the server, photo, first-use and security tests share."""
from __future__ import annotations

import contextlib
import json
import time
from typing import Any


class Tab:
    """One tab: ``send`` a message, ``until`` its reply; frames are acknowledged, the last state kept."""

    def __init__(self, ws: Any, cm: Any = None) -> None:
        self.ws, self.n, self.sid, self.state = ws, 0, None, None
        self.seen: list[dict] = []
        self._cm = cm

    def close(self) -> None:
        """Leave the websocket context this tab was opened with (``cm``), once."""
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
        """The next message of type ``kind`` (answering message ``re`` when given); an error frame
        on the way fails the test."""
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
        """Send an action and return the state that answers it."""
        return self.until("state", self.send(**msg))

    def error(self, **msg: Any) -> dict:
        """Send a bad message and return the error frame that answers it (an error frame answering
        another message, or a state answering this one, fails the test)."""
        i = self.send(**msg)
        while True:
            m = self.recv()
            if m["type"] == "error":
                assert m.get("re") in (i, None), m
                return m
            assert not (m["type"] == "state" and m.get("re") == i), f"expected an error, got {m}"

    def drag(self, max_steps: int) -> tuple[list[dict], dict, dict]:
        """Start a drag; returns (frames, done, final state)."""
        self.send(type="start", max_steps=max_steps)
        frames = []
        while True:
            m = self.recv()
            if m["type"] == "frame":
                frames.append(m)
            elif m["type"] == "error":
                raise AssertionError(m)
            elif m["type"] == "done":
                done = m
            elif m["type"] == "state" and not m["running"] and any(x["type"] == "done" for x in self.seen):
                return frames, done, m

    def ping_seconds(self) -> float:
        """Round-trip time of a ping, seconds."""
        t = time.perf_counter()
        i = self.send(type="ping")
        while True:
            m = self.recv()
            if m["type"] == "pong" and m.get("re") == i:
                return time.perf_counter() - t
