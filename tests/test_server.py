"""The web app's HTTP API and websocket protocol (no browser; see test_browser.py).

A tiny randomly initialised generator stands in for a trained model: these
tests check the protocol, isolation, persistence and limits, not the
quality of drags (test_browser.py drags the trained ``toy`` model).
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastapi.testclient import TestClient

from dragkit.server.app import Limits, create_app
from dragkit.server.compute import ComputeQueue
from support.generators import HOME_RES
from support.webtab import Tab

pytestmark = pytest.mark.timeout(120)

RES = HOME_RES  # the served model, conftest's ``tiny``


_OPEN_TABS: list = []


@contextlib.contextmanager
def serving(app, **kw):
    """A TestClient that closes the tabs left open by a failed test (else exit hangs)."""
    with TestClient(app, **kw) as c:
        try:
            yield c
        finally:
            while _OPEN_TABS:
                close_tab(_OPEN_TABS[-1])


@pytest.fixture
def client(model_home, sessions_dir):
    with serving(create_app("tiny", sessions_dir=sessions_dir)) as c:
        yield c


def open_tab(client, **hello) -> Tab:
    tab = Tab(client.websocket_connect("/ws").__enter__())
    _OPEN_TABS.append(tab)
    tab.hello(**hello)
    return tab


def close_tab(tab: Tab) -> None:
    if tab in _OPEN_TABS:
        _OPEN_TABS.remove(tab)
        tab.ws.__exit__(None, None, None)


def png_b64(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode_data_url(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


# ---------------------------------------------------------------------------


def test_page_and_static_files_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "dragkit" in r.text and "static/app.js" in r.text
    for path in ("/static/app.js", "/static/app.css"):
        assert client.get(path).status_code == 200
    # The page's ES modules: each one served, none fetching from elsewhere, and no import of a
    # module that is not served (no build step).
    import re

    static = Path(__file__).resolve().parents[1] / "src" / "dragkit" / "server" / "static"
    modules = sorted(p.name for p in static.glob("*.js"))
    assert {"app.js", "state.js", "socket.js", "draw.js", "controls.js"} <= set(modules)
    for name in modules:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"], name
        js = r.text
        assert "http://" not in js and "https://" not in js, name  # nothing fetched from elsewhere
        for imported in re.findall(r'from "\./([a-z]+\.js)"', js):
            assert imported in modules, (name, imported)
    assert client.get("/api/health").json()["ok"] is True
    names = [m["name"] for m in client.get("/api/models").json()["models"]]
    assert "tiny" in names


def test_protocol_edit_drag_undo_redo(client):
    tab = open_tab(client)
    st0 = tab.state
    assert st0["model"] == "tiny" and st0["resolution"] == RES and st0["points"] == []
    img0 = decode_data_url(st0["image"])
    assert img0.shape == (RES, RES, 3)
    assert not st0["can_undo"]

    st = tab.do(type="add_point", handle=[8, 8], target=[20, 14])
    assert st["points"] == [{"handle": [8.0, 8.0], "target": [20.0, 14.0]}]
    assert st["can_undo"] and "image" not in st  # image unchanged: not resent
    st = tab.do(type="move_point", index=0, target=[22, 16])
    assert st["points"][0]["target"] == [22.0, 16.0]
    st = tab.do(type="add_point", handle=[25, 25], target=[28, 28])
    st = tab.do(type="remove_point", index=1)
    assert len(st["points"]) == 1

    mask = np.zeros((RES, RES), bool)
    mask[4:20, 4:28] = True
    st = tab.do(type="set_mask", mask=png_b64(mask))
    assert (decode_data_url(st["mask"]) > 127).sum() == mask.sum()

    st = tab.do(type="options", options={"lr": 0.01, "tracking": "l2", "r2": 5}, max_steps=7)
    assert st["options"]["lr"] == 0.01 and st["options"]["tracking"] == "l2" and st["max_steps"] == 7
    assert st["options_resolved"]["r1"] > 0

    frames, done, st = tab.drag(max_steps=4)
    started = next(m for m in tab.seen if m["type"] == "started")
    assert started["max_steps"] == 4
    assert frames, "no live frame arrived"
    assert all(f["image"].startswith("data:image/png;base64,") and len(f["distances"]) == 1 for f in frames)
    assert done["reason"] in ("max_steps", "reached") and 1 <= done["steps"] <= 4
    assert st["last_steps"] == done["steps"] and st["has_video"]
    img1 = decode_data_url(st["image"])
    assert np.abs(img1.astype(int) - img0).max() > 0, "the drag did not change the image"

    # Undo the drag: the image is the one before it; redo brings the drag back.
    st = tab.do(type="undo")
    assert np.array_equal(decode_data_url(st["image"]), img0)
    assert st["points"][0]["handle"] == [8.0, 8.0] and st["can_redo"]
    st = tab.do(type="redo")
    assert np.array_equal(decode_data_url(st["image"]), img1)

    # Undo everything back to the start, step by step: drag, options are not
    # history, mask, remove, add, move, add.
    for _ in range(6):
        st = tab.do(type="undo")
    assert st["points"] == [] and st["mask"] is None and not st["can_undo"]
    assert st["options"]["lr"] == 0.01, "undo must not revert options"
    assert tab.error(type="undo")["message"] == "nothing to undo"
    close_tab(tab)


def model_home_path(client) -> Path:
    return Path(os.environ["DRAGKIT_HOME"])


def test_new_image_seed_and_model(client):
    tab = open_tab(client, seed=3)
    assert tab.state["seed"] == 3
    a = decode_data_url(tab.state["image"])
    st = tab.do(type="new", seed=4, psi=0.5)
    assert st["seed"] == 4 and st["psi"] == 0.5
    assert not np.array_equal(decode_data_url(st["image"]), a)
    st = tab.do(type="undo")
    assert st["seed"] == 3 and np.array_equal(decode_data_url(st["image"]), a)
    err = tab.error(type="new", model="no-such-model")
    assert "no-such-model" in err["message"] and "tiny" in err["message"]
    # A path is not a model name: the browser cannot make the server read files.
    path = str(model_home_path(client) / "tiny.safetensors")
    assert "unknown model" in tab.error(type="new", model=path)["message"]
    close_tab(tab)


BAD_MESSAGES = [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"kind": "x"}', "JSON object"),
    ('{"type": "fly"}', "unknown message type"),
    ('{"type": "add_point", "handle": [1, 2]}', "needs 'target'"),
    ('{"type": "add_point", "handle": [1], "target": [3, 4]}', "[x, y]"),
    ('{"type": "add_point", "handle": ["a", 2], "target": [3, 4]}', "[x, y]"),
    ('{"type": "add_point", "handle": [NaN, 2], "target": [3, 4]}', "[x, y]"),
    ('{"type": "add_point", "handle": [-5, 2], "target": [3, 4]}', "outside"),
    ('{"type": "add_point", "handle": [1, 2], "target": [3, 400]}', "outside"),
    ('{"type": "add_point", "handle": [1, 2], "target": [3, 4], "extra": 1}', "unknown field"),
    ('{"type": "move_point", "index": 5, "target": [3, 4]}', "no point pair"),
    ('{"type": "move_point", "index": 0}', "needs a handle or a target"),
    ('{"type": "move_point", "target": [1, 1]}', "needs 'index'"),
    ('{"type": "remove_point", "index": true}', "whole number"),
    ('{"type": "remove_point", "index": 0}', "no point pair"),
    ('{"type": "options", "options": {"warp": 9}}', "unknown option"),
    ('{"type": "options", "options": {"lr": -1}}', "between"),
    ('{"type": "options", "options": {"layers": 99}}', "layers"),
    ('{"type": "options", "options": {"space": "z"}}', "one of"),
    ('{"type": "options", "options": {"feature_block": 7}}', "feature_block"),
    ('{"type": "options", "options": "fast"}', "object"),
    ('{"type": "options", "max_steps": 0}', "between"),
    ('{"type": "set_mask", "mask": "%%%"}', "base64"),
    ('{"type": "set_mask", "mask": "aGVsbG8="}', "PNG"),
    ('{"type": "set_mask"}', "needs 'mask'"),
    ('{"type": "start"}', "place at least one"),
    ('{"type": "stop"}', "no drag is running"),
    ('{"type": "redo"}', "nothing to redo"),
    ('{"type": "new", "seed": -1}', "seed"),
    ('{"type": "new", "psi": "high"}', "psi"),
    ('{"type": "open", "data": "{\\"format\\": \\"nope\\"}"}', "session"),
    ('{"type": "open", "data": "garbage"}', "not JSON"),
    ('{"type": "hello"}', "already said hello"),
]


@pytest.mark.parametrize("raw,expect", BAD_MESSAGES, ids=[b[0][:40] for b in BAD_MESSAGES])
def test_bad_message_gets_error_frame_and_tab_keeps_working(client, raw, expect):
    tab = open_tab(client)
    before = tab.state
    tab.ws.send_text(raw)
    err = tab.until("error")
    assert expect.lower() in err["message"].lower(), err
    # The tab still works and nothing changed.
    st = tab.do(type="state")
    assert st["points"] == before["points"] and st["can_undo"] == before["can_undo"]
    st = tab.do(type="add_point", handle=[3, 3], target=[9, 9])
    assert len(st["points"]) == 1
    close_tab(tab)


def _documented_message_types() -> set[str]:
    """The client messages docs/app.md's table lists (first column)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "app.md").read_text()
    table = text.split("Client to server", 1)[1].split("Server to client", 1)[0]
    return {t for row in re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", table, re.M) for t in re.findall(r"[a-z_]+", row)}


def test_every_client_message_type_has_a_schema_and_a_handler():
    from dragkit.server import protocol
    from dragkit.server.handlers import HANDLERS

    types = set(protocol.MESSAGE_TYPES)
    assert len(types) == len(protocol.MESSAGES) == 17
    assert set(HANDLERS) == types  # nothing handled without a schema, no schema without a handler
    assert _documented_message_types() == types
    for model in protocol.MESSAGES:
        assert model.model_config.get("extra") == "forbid", model


#: The required fields of the messages that have some, well-formed.
REQUIRED = {"add_point": {"handle": [1, 2], "target": [3, 4]}, "move_point": {"index": 0, "target": [3, 4]},
            "remove_point": {"index": 0}, "set_mask": {"mask": None}, "open": {"data": "{}"}}


def _malformed(kind: str) -> list[tuple[dict, str]]:
    """Messages of type ``kind`` that break its schema, each with the word the error must name:
    an unknown field, and every field of the schema given a value of no allowed type."""
    from dragkit.server import protocol

    model = next(m for m in protocol.MESSAGES if m.model_fields["type"].annotation.__args__[0] == kind)
    valid = {"type": kind, **REQUIRED.get(kind, {})}
    model.model_validate(valid)  # the base is well-formed: only the broken field is at fault
    out = [({**valid, "zzz": 1}, "zzz")]
    for name in model.model_fields:
        if name not in ("type", "id"):
            out.append(({**valid, name: [[]]}, name))
    return out


def _one_error_then_quiet(tab: Tab, raw: dict) -> dict:
    """Send ``raw``; the error frame that answers it, checking no other frame answers it too."""
    i = tab.send(**raw)
    err = tab.until("error")
    assert err.get("re") == i and err["code"] == "bad_request", err
    j = tab.send(type="ping")
    between = []
    while True:
        m = tab.recv()
        if m["type"] == "pong" and m.get("re") == j:
            break
        between.append(m)
    assert not [m for m in between if m.get("re") == i], f"a refused message was answered twice: {between}"
    return err


def test_malformed_messages_of_every_type_get_one_error_frame_from_their_schema(client):
    from dragkit.server import protocol

    tab = open_tab(client, seed=2)
    tab.do(type="add_point", handle=[5, 5], target=[9, 7])
    before = tab.do(type="state")
    keep = {k: before[k] for k in ("session", "seed", "psi", "points", "options", "max_steps", "image_rev",
                                   "can_undo", "can_redo", "mask")}
    checked = set()
    for kind in protocol.MESSAGE_TYPES:
        for raw, word in _malformed(kind):
            err = _one_error_then_quiet(tab, raw)
            assert word in err["message"], (raw, err)
            assert "\n" not in err["message"] and len(err["message"]) < 300, err
            checked.add(kind)
    assert checked == set(protocol.MESSAGE_TYPES)
    after = tab.do(type="state")
    assert {k: after[k] for k in keep} == keep  # the session is intact
    assert len(tab.do(type="add_point", handle=[3, 3], target=[9, 9])["points"]) == 2  # and still works
    close_tab(tab)


def test_wrong_mask_size_and_binary_frames(client):
    tab = open_tab(client)
    err = tab.error(type="set_mask", mask=png_b64(np.ones((RES + 1, RES), bool)))
    assert f"{RES}x{RES}" in err["message"]
    tab.ws.send_bytes(b"\x00\x01")
    assert "binary" in tab.until("error")["message"]
    i = tab.send(type="ping")
    assert tab.until("pong", i)
    close_tab(tab)


def test_message_before_hello_is_refused(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"type": "add_point", "handle": [1, 1], "target": [2, 2], "id": 1}))
        m = ws.receive_json()
        assert m["type"] == "error" and m["code"] == "no_session" and m["re"] == 1


def test_two_tabs_do_not_see_each_other(client):
    a = open_tab(client, seed=1)
    b = open_tab(client, seed=1)
    assert a.sid != b.sid
    a.do(type="add_point", handle=[5, 5], target=[10, 10])
    mask = np.zeros((RES, RES), bool)
    mask[:8] = True
    a.do(type="set_mask", mask=png_b64(mask))
    st_b = b.do(type="add_point", handle=[20, 20], target=[25, 22])
    assert st_b["points"] == [{"handle": [20.0, 20.0], "target": [25.0, 22.0]}]
    assert st_b["mask"] is None
    st_a = a.do(type="state")
    assert st_a["points"] == [{"handle": [5.0, 5.0], "target": [10.0, 10.0]}]
    # Undo in one tab does not touch the other.
    b.do(type="undo")
    assert a.do(type="state")["points"] == st_a["points"]
    # Nor do their files.
    fa = json.loads(client.get(f"/api/sessions/{a.sid}/session.dragkit.json").content)
    fb = json.loads(client.get(f"/api/sessions/{b.sid}/session.dragkit.json").content)
    assert len(fa["points"]) == 1 and fb["points"] == []
    close_tab(a)
    close_tab(b)


def test_concurrent_drags_share_the_compute_queue(client):
    a = open_tab(client, seed=1)
    b = open_tab(client, seed=2)
    a.do(type="add_point", handle=[5, 5], target=[25, 25])
    b.do(type="add_point", handle=[25, 5], target=[5, 25])
    a.send(type="start", max_steps=3)
    b.send(type="start", max_steps=3)
    results = {}

    def finish(tab, key):
        while True:
            m = tab.recv()
            if m["type"] == "done":
                results[key] = m
                return

    ta = threading.Thread(target=finish, args=(a, "a"))
    tb = threading.Thread(target=finish, args=(b, "b"))
    ta.start(), tb.start()
    ta.join(60), tb.join(60)
    assert results["a"]["steps"] == 3 and results["b"]["steps"] == 3
    close_tab(a)
    close_tab(b)


def start_long_drag(tab: Tab) -> None:
    """Start a drag that runs until stopped (one point far from its target, 1000 steps)."""
    tab.do(type="add_point", handle=[4, 4], target=[28, 28])
    tab.send(type="start", max_steps=1000)


def test_stop_ends_a_drag_and_it_is_one_undo_step(client):
    tab = open_tab(client)
    start_long_drag(tab)
    tab.until("frame")
    tab.send(type="stop")
    done = tab.until("done")
    assert done["reason"] == "stopped" and done["steps"] < 1000
    st = tab.until("state")
    assert not st["running"]
    # While running, edits are refused; after it, they work again.
    st = tab.do(type="undo")
    assert st["points"][0]["handle"] == [4.0, 4.0]
    close_tab(tab)


def test_edits_are_refused_while_running(client):
    tab = open_tab(client)
    start_long_drag(tab)
    tab.until("started")
    for bad in ({"type": "add_point", "handle": [1, 1], "target": [2, 2]}, {"type": "undo"}, {"type": "start"}):
        assert "running" in tab.error(**bad)["message"]
    tab.send(type="stop")
    tab.until("done")
    close_tab(tab)


def test_downloads_png_session_video_and_reopen(client):
    tab = open_tab(client, seed=5)
    tab.do(type="add_point", handle=[6, 6], target=[12, 9])
    mask = np.zeros((RES, RES), bool)
    mask[2:14, 2:20] = True
    tab.do(type="set_mask", mask=png_b64(mask))
    r = client.get(f"/api/sessions/{tab.sid}/progress.mp4")
    assert r.status_code == 404 and "no drag yet" in r.json()["error"]
    tab.drag(max_steps=2)

    r = client.get(f"/api/sessions/{tab.sid}/image.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "attachment" in r.headers["content-disposition"]
    png = Image.open(io.BytesIO(r.content))
    assert png.size == (RES, RES)

    for ext, magic in (("gif", b"GIF8"), ("mp4", b"ftyp")):
        r = client.get(f"/api/sessions/{tab.sid}/progress.{ext}")
        assert r.status_code == 200, r.text
        assert magic in r.content[:16]

    r = client.get(f"/api/sessions/{tab.sid}/session.dragkit.json")
    assert r.status_code == 200
    doc = json.loads(r.content)
    assert doc["format"] == "dragkit-session" and len(doc["points"]) == 1 and doc["mask"] is not None

    # Open it in a fresh tab: same image, points and mask.
    other = open_tab(client, seed=9)
    st = other.do(type="open", data=r.text)
    assert st["points"] == tab.state["points"]
    assert (decode_data_url(st["mask"]) > 127).sum() == mask.sum()
    assert np.array_equal(decode_data_url(st["image"]), np.asarray(png.convert("RGB")))
    assert st["can_undo"]  # opening is an undoable action
    assert other.do(type="undo")["seed"] == 9
    close_tab(tab)
    close_tab(other)


def test_bad_session_ids_and_upload_hook(client):
    assert client.get("/api/sessions/../../etc/image.png").status_code == 404
    assert client.get("/api/sessions/short/image.png").status_code == 404
    r = client.get("/api/sessions/" + "A" * 24 + "/image.png")
    assert r.status_code == 404 and "no such session" in r.json()["error"]
    r = client.post("/api/sessions/" + "A" * 24 + "/upload-image", content=b"x")
    assert r.status_code == 404 and "no such session" in r.json()["error"]


def test_restart_reopens_every_open_edit(model_home, sessions_dir):
    mask = np.zeros((RES, RES), bool)
    mask[10:20, 10:20] = True
    with serving(create_app("tiny", sessions_dir=sessions_dir)) as c1:
        a = open_tab(c1, seed=7)
        b = open_tab(c1, seed=8)
        a.do(type="add_point", handle=[3, 4], target=[10, 12])
        a.do(type="set_mask", mask=png_b64(mask))
        a.do(type="options", options={"lr": 0.02}, max_steps=50)
        a.drag(max_steps=2)
        b.do(type="add_point", handle=[30, 30], target=[20, 20])
        state_a, state_b = a.do(type="state"), b.do(type="state")
        # The server goes away without the tabs saying goodbye.
    with serving(create_app("tiny", sessions_dir=sessions_dir)) as c2:
        a2 = open_tab(c2, session=a.sid)
        b2 = open_tab(c2, session=b.sid)
        welcome = next(m for m in a2.seen if m["type"] == "welcome")
        assert welcome["resumed"] == "resumed" and a2.sid == a.sid
        for old, new in ((state_a, a2.state), (state_b, b2.state)):
            for key in ("points", "mask", "seed", "options", "max_steps", "can_undo", "can_redo", "model"):
                assert new[key] == old[key], key
            assert np.array_equal(decode_data_url(new["image"]), decode_data_url(old["image"]))
        # History survived too: undo the drag, then the options-free edits.
        st = a2.do(type="undo")
        assert st["points"][0]["handle"] == [3.0, 4.0]
        st = a2.do(type="undo")
        assert st["mask"] is None
        close_tab(a2)
        close_tab(b2)


def test_unknown_session_id_starts_fresh(client):
    tab = open_tab(client, session="Z" * 24)
    assert tab.sid != "Z" * 24
    assert next(m for m in tab.seen if m["type"] == "welcome")["resumed"] == "new"
    close_tab(tab)


def test_same_session_in_two_tabs_gets_a_copy(client):
    a = open_tab(client)
    a.do(type="add_point", handle=[3, 4], target=[10, 12])
    b = open_tab(client, session=a.sid)  # a duplicated browser tab
    assert b.sid != a.sid
    assert b.state["points"] == a.state["points"]
    b.do(type="clear_points")
    assert len(a.do(type="state")["points"]) == 1
    close_tab(a)
    close_tab(b)


def test_limits_give_clear_messages(model_home, sessions_dir):
    limits = Limits(max_points=2, max_steps=10, max_sessions=2, max_upload_bytes=1000)
    with serving(create_app("tiny", sessions_dir=sessions_dir, limits=limits)) as c:
        a = open_tab(c)
        a.do(type="add_point", handle=[1, 1], target=[2, 2])
        a.do(type="add_point", handle=[3, 3], target=[4, 4])
        err = a.error(type="add_point", handle=[5, 5], target=[6, 6])
        assert "at most 2 point pairs" in err["message"] and err["code"] == "limit"
        assert "between 1 and 10" in a.error(type="start", max_steps=11)["message"]
        err = a.error(type="open", data="x" * 2000)
        assert "too large" in err["message"] and err["code"] == "limit"
        big = json.dumps({"type": "open", "data": "x" * (limits.max_message_chars + 10)})
        a.ws.send_text(big)
        assert "too large" in a.until("error")["message"]
        b = open_tab(c)
        with c.websocket_connect("/ws") as ws3:
            ws3.send_text(json.dumps({"type": "hello", "id": 1}))
            m = ws3.receive_json()
            assert m["type"] == "error" and m["code"] == "limit" and "too many open editor tabs" in m["message"]
        close_tab(b)
        c2 = open_tab(c)  # a slot is free again
        close_tab(c2)
        close_tab(a)


def test_token_is_required_on_every_request(model_home, sessions_dir):
    app = create_app("tiny", sessions_dir=sessions_dir, token="s3cret-token")
    with serving(app) as c:
        r = c.get("/")
        assert r.status_code == 401 and "token" in r.text.lower()  # the login page, not the editor
        assert "app.js" not in r.text
        assert c.get("/static/app.js").status_code == 401
        assert c.get("/api/models").status_code == 401
        assert c.get("/api/models", headers={"X-Dragkit-Token": "wrong-token"}).status_code == 401
        # Never from a URL: query strings end up in logs and browser history.
        assert c.get("/api/models", params={"token": "s3cret-token"}).status_code == 401
        assert c.get("/api/models", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/api/models", headers={"X-Dragkit-Token": "s3cret-token"}).status_code == 200
        assert c.post("/api/login", headers={"X-Dragkit-Token": "nope-nope"}).status_code == 401
        r = c.post("/api/login", headers={"X-Dragkit-Token": "s3cret-token"})
        cookie = r.headers.get("set-cookie", "")
        assert r.status_code == 204 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert c.get("/static/app.js").status_code == 200  # the cookie now carries it
        assert c.get("/").status_code == 200
        c.cookies.clear()
        with pytest.raises(Exception):
            with c.websocket_connect("/ws") as ws:
                ws.send_text('{"type":"hello"}')
                ws.receive_json()
        with pytest.raises(Exception):
            with c.websocket_connect("/ws?token=s3cret-token") as ws:
                ws.send_text('{"type":"hello"}')
                ws.receive_json()
        with c.websocket_connect("/ws", headers={"X-Dragkit-Token": "s3cret-token"}) as ws:
            ws.send_text('{"type":"hello","id":1}')
            assert ws.receive_json()["type"] == "welcome"


def test_websocket_from_another_site_is_refused(client):
    with pytest.raises(Exception):
        with client.websocket_connect("/ws", headers={"Origin": "http://evil.example"}) as ws:
            ws.send_text('{"type":"hello"}')
            ws.receive_json()
    with client.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:
        ws.send_text('{"type":"hello","id":1}')
        assert ws.receive_json()["type"] == "welcome"


def test_host_header_checked_on_loopback(model_home, sessions_dir):
    app = create_app("tiny", sessions_dir=sessions_dir, allowed_hosts={"127.0.0.1", "localhost"})
    with serving(app, base_url="http://127.0.0.1:7860") as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/health", headers={"Host": "attacker.example"}).status_code == 400


def test_sessions_are_saved_atomically_after_each_action(client, sessions_dir):
    tab = open_tab(client)
    path = Path(sessions_dir) / tab.sid / "session.json"
    assert path.is_file()
    n_before = len(json.loads(path.read_text())["undo"])
    tab.do(type="add_point", handle=[3, 3], target=[6, 6])
    doc = json.loads(path.read_text())
    assert len(doc["undo"]) == n_before + 1 and len(doc["current"]["engine"]["points"]) == 1
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # The latent is stored once, however long the history.
    for i in range(5):
        tab.do(type="move_point", index=0, target=[6 + i, 6])
    assert len(list((path.parent / "blobs").glob("*.json"))) <= 3
    close_tab(tab)


def test_cli_refuses_public_host_without_token(capsys):
    from dragkit.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "--token" in err and "0.0.0.0" in err and "Traceback" not in err


def test_compute_queue_is_fair_round_robin():
    q = ComputeQueue()
    order: list[str] = []
    counts = {"a": 0, "b": 0}
    gate = threading.Event()

    def looper(name, n):
        def step():
            gate.wait(5)
            order.append(name)
            counts[name] += 1
            return "done" if counts[name] >= n else None
        return step

    fa = q.submit_loop("a", looper("a", 4))
    fb = q.submit_loop("b", looper("b", 4))
    fc = q.submit("c", lambda: order.append("c") or 42)
    gate.set()
    assert fa.result(5) == "done" and fb.result(5) == "done" and fc.result(5) == 42
    # a and b alternate; c's one-off action ran within the first round.
    assert order.index("c") <= 3
    ab = [x for x in order if x != "c"]
    assert ab == ["a", "b"] * 4
    err = q.submit("d", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        err.result(5)
    assert q.submit("d", lambda: "still alive").result(5) == "still alive"
    q.close()


def test_reload_during_a_drag_resumes_the_same_session(client):
    a = open_tab(client)
    a.do(type="add_point", handle=[4, 4], target=[28, 28])
    a.send(type="start", max_steps=1000)
    a.until("frame")
    sid = a.sid
    close_tab(a)  # the page reloads without pressing Stop
    b = open_tab(client, session=sid)
    welcome = next(m for m in b.seen if m["type"] == "welcome")
    assert welcome["resumed"] == "resumed" and b.sid == sid
    assert not b.state["running"] and len(b.state["points"]) == 1
    close_tab(b)


def test_frames_wait_for_the_browser(client):
    """A page that does not acknowledge frames gets at most two; the drag still runs to the end."""
    tab = open_tab(client)
    tab.do(type="add_point", handle=[4, 4], target=[28, 28])
    tab.ws.send_text(json.dumps({"type": "start", "max_steps": 12}))
    frames = 0
    while True:
        m = tab.ws.receive_json()  # no acks
        if m["type"] == "frame":
            frames += 1
        if m["type"] == "done":
            break
    assert m["steps"] == 12 and 1 <= frames <= 2
    tab.until("state")
    close_tab(tab)


def test_old_saved_edits_are_pruned_and_recent_ones_kept(tmp_path):
    from dragkit.server.sessions import SessionStore

    store = SessionStore(tmp_path)
    old, new = "a" * 20, "b" * 20
    for sid in (old, new):
        (tmp_path / sid).mkdir()
        (tmp_path / sid / "session.json").write_text("{}")
    stale = time.time() - 40 * 86400
    os.utime(tmp_path / old / "session.json", (stale, stale))
    (tmp_path / "not-a-session").mkdir()  # foreign folders are left alone
    assert store.prune(30) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new, "not-a-session"])
