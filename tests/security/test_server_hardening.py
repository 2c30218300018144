"""Finding 7 (web half): the token, private folders, bounded disk and memory, headers, error texts."""
from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from dragkit.server.app import Limits, create_app
from dragkit.server.security import TOKEN_ENV, cookie_name
from sec_hostile import png_bytes
from sec_web import b64, tabs, uvicorn_server

pytestmark = [pytest.mark.security, pytest.mark.timeout(180)]

TOKEN = "sec-" + "k3y" * 8


def test_token_never_appears_in_a_response_a_url_or_a_log_line(model_home, sessions_dir, caplog):
    """A real uvicorn with its access log on: nothing it logs or sends contains the token or a temp path."""
    from websockets.sync.client import connect

    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    app = create_app("tiny", sessions_dir=sessions_dir, token=TOKEN, allowed_hosts={"127.0.0.1"})
    with uvicorn_server(app) as host, httpx.Client(base_url=f"http://{host}") as http:
        def get(path, **kw):
            r = http.get(path, **kw)
            seen.append(f"{r.status_code} {r.headers} {r.text}")
            return r

        login_page = get("/")
        assert login_page.status_code == 401 and "#token=" in login_page.text
        assert get("/api/health").status_code == 401
        r = http.post("/api/login", headers={"X-Dragkit-Token": TOKEN})
        seen.append(f"{r.status_code} {r.headers} {r.text}")
        assert r.status_code == 204 and cookie_name(TOKEN) in http.cookies
        assert get("/").status_code == 200 and get("/static/app.js").status_code == 200
        cookie = f"{cookie_name(TOKEN)}={http.cookies[cookie_name(TOKEN)]}"
        with connect(f"ws://{host}/ws", additional_headers={"Cookie": cookie}, origin=f"http://{host}") as ws:
            def say(**msg):
                ws.send(json.dumps(msg))
                while True:
                    m = ws.recv(timeout=30)
                    seen.append(m)
                    d = json.loads(m)
                    if d.get("re") == msg.get("id") and d["type"] in ("state", "error"):
                        return d

            ws.send(json.dumps({"type": "hello", "id": 1}))
            sid = None
            while sid is None or json.loads(seen[-1])["type"] != "state":
                seen.append(ws.recv(timeout=30))
                sid = sid or json.loads(seen[-1]).get("session")
            say(type="add_point", id=2, handle=[4, 4], target=[9, 9])
            assert say(type="open", id=3, data="{\"format\": \"dragkit-session\"}")["type"] == "error"
            assert say(type="open", id=4, data="garbage")["type"] == "error"
            assert say(type="set_mask", id=5, mask=b64(b"\x89PNG junk"))["type"] == "error"
            assert say(type="options", id=6, options={"r1": 1e9})["type"] == "error"
        for path in (f"/api/sessions/{sid}/image.png", f"/api/sessions/{sid}/session.dragkit.json",
                     f"/api/sessions/{sid}/progress.gif", "/api/sessions/" + "x" * 30 + "/image.png",
                     "/api/sessions/../../etc/passwd/image.png"):
            get(path)
        with pytest.raises(Exception):  # a websocket without the cookie is refused
            with connect(f"ws://{host}/ws", open_timeout=5) as ws:
                ws.recv(timeout=5)
    logs = [r.getMessage() for r in caplog.records]
    assert any("GET /api/sessions/" in m for m in logs), "the access log was not captured"
    temp = tempfile.gettempdir().rstrip("/") + "/"
    for text in seen + logs:
        assert TOKEN not in text, text[:300]
        assert temp not in text and str(sessions_dir) not in text, text[:300]
    js = (Path(__file__).resolve().parents[2] / "src/dragkit/server/static/app.js").read_text()
    assert 'searchParams.set("token"' not in js and "?token=" not in js


def test_token_is_generated_by_default_kept_private_and_read_from_the_environment(model_home, tmp_path,
                                                                                  monkeypatch, capsys):
    import uvicorn

    from dragkit.cli import main

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)  # build, print, do not serve
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    sessions = tmp_path / "sessions"
    args = ["serve", "--model", "tiny", "--port", "0", "--sessions-dir", str(sessions)]
    urls = []
    for _ in range(2):
        assert main(args) == 0
        err = capsys.readouterr().err
        urls.append(next(line for line in err.splitlines() if "dragkit editor:" in line))
    assert "#token=" in urls[0] and "?token=" not in urls[0]  # loopback too, in the fragment only
    token = urls[0].split("#token=", 1)[1]
    assert urls[1].endswith("#token=" + token)  # kept across restarts, so open tabs reconnect
    assert len(token) >= 24 and (sessions / ".token").read_text().strip() == token
    assert stat.S_IMODE((sessions / ".token").stat().st_mode) == 0o600
    assert stat.S_IMODE(sessions.stat().st_mode) == 0o700
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "from-the-environment" not in err and f"${TOKEN_ENV}" in err
    monkeypatch.delenv(TOKEN_ENV)
    assert main(args + ["--token", "typed-on-the-command-line"]) == 0
    assert "visible to other users" in capsys.readouterr().err


def test_session_folders_are_private(model_home, tmp_path):
    root = tmp_path / "sessions"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)  # as older versions left it
    with TestClient(create_app("tiny", sessions_dir=root)) as c, tabs(c) as open_tab:
        t = open_tab()
        t.do(type="add_point", handle=[3, 3], target=[9, 9])
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    found = list((root / t.sid).rglob("*"))
    assert (root / t.sid / "blobs").is_dir() and (root / t.sid / "session.json") in found
    for p in [root / t.sid, *found]:
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, p


def test_disk_and_memory_stay_bounded(model_home, sessions_dir):
    limits = Limits(max_sessions=2, max_saved=3, max_pending=2, hello_timeout=0.5)
    app = create_app("tiny", sessions_dir=sessions_dir, limits=limits)
    with TestClient(app) as c:
        server = app.state.server
        with tabs(c) as open_tab:
            sids = []
            for _ in range(8):  # every hello used to leave a folder until the next start-up
                t = open_tab()
                sids.append(t.sid)
                t.close()
        folders = [p for p in Path(sessions_dir).iterdir() if p.is_dir()]
        assert len(folders) <= limits.max_saved + 1, folders
        # Tabs loaded by a download are evicted like detached ones.
        server.tabs.clear()
        for sid in sids:
            c.get(f"/api/sessions/{sid}/image.png")
        assert len(server.tabs) <= 2 * limits.max_sessions
        # Connections that never say hello are counted and closed.
        managers = [c.websocket_connect("/ws") for _ in range(limits.max_pending)]
        silent = [cm.__enter__() for cm in managers]
        try:
            with c.websocket_connect("/ws") as extra:
                with pytest.raises(WebSocketDisconnect) as info:
                    extra.receive_json()
                assert info.value.code == 1013
            t0 = time.monotonic()
            for ws in silent:
                with pytest.raises(WebSocketDisconnect) as info:
                    ws.receive_json()
                assert info.value.code == 1008
            assert time.monotonic() - t0 < 5
        finally:
            for cm in managers:
                try:
                    cm.__exit__(None, None, None)
                except Exception:
                    pass
        assert server.pending == 0
        with tabs(c) as open_tab:  # and the server still serves
            assert open_tab().state["model"] == "tiny"


def test_anti_framing_headers_on_every_response(model_home, sessions_dir):
    with TestClient(create_app("tiny", sessions_dir=sessions_dir, token=TOKEN)) as c:
        responses = [c.get("/"), c.get("/api/health"), c.get("/static/app.js"),
                     c.get("/api/health", headers={"X-Dragkit-Token": TOKEN}),
                     c.get("/static/app.js", headers={"X-Dragkit-Token": TOKEN}),
                     c.get("/", headers={"X-Dragkit-Token": TOKEN}), c.get("/nope", headers={"X-Dragkit-Token": TOKEN})]
        for r in responses:
            assert r.headers["x-frame-options"] == "DENY", r.url
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], r.url
            assert r.headers["x-content-type-options"] == "nosniff"


def test_errors_name_no_temporary_paths(client):
    with tabs(client) as open_tab:
        t = open_tab()
        texts = [t.error(type="open", data=d)["message"] for d in
                 ('{"format": "dragkit-session"}', "{" * 50_000, '{"format": "dragkit-session", "psi": NaN}',
                  json.dumps({"format": "dragkit-session", "version": 1, "model": {}}))]
        texts.append(t.error(type="set_mask", mask=b64(png_bytes(np.ones((8, 8), bool))))["message"])
    temp = tempfile.gettempdir().rstrip("/") + "/"
    for text in texts:
        assert temp not in text and "dragkit-open-" not in text and "Traceback" not in text, text
