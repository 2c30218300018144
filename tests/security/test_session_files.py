"""Finding 1: a crafted session file must not read other files through the server.

The attack of issue 17: a session file whose ``seed`` is ``{"$blob": "/some/private"}``
was kept by ``DragSession.set_state``, saved by the server, and resolved as
``blobs//some/private.json`` when the tab was reloaded, so a download returned
the private file.  Every field of a session is now validated (drag/schema.py)
and blob references must be the store's own 40-hex-digit ids.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dragkit.drag.session import DragSession
from dragkit.errors import DragkitError
from dragkit.server.app import Limits, create_app
from sec_hostile import tiny_generator
from sec_web import tabs

pytestmark = [pytest.mark.security, pytest.mark.timeout(120)]


@pytest.fixture
def private(tmp_path):
    """A private JSON file outside the sessions folder, and the marker its content carries."""
    marker = "PRIVATE-" + secrets.token_hex(8)
    path = tmp_path / "elsewhere" / "private.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"secret": marker}))
    return path, marker


def session_file(sid_tab, **change) -> str:
    """The tab's own session file (as the download gives it), with fields replaced."""
    doc = json.loads(sid_tab)
    doc.update(change)
    return json.dumps(doc)


def test_blob_seed_session_never_leaks_the_private_file(model_home, sessions_dir, private):
    path, marker = private
    ref = str(path.with_suffix(""))  # the server appended ".json"
    app = create_app("tiny", sessions_dir=sessions_dir, limits=Limits(max_sessions=2))
    seen: list[str] = []
    with TestClient(app) as c, tabs(c) as open_tab:
        a = open_tab()
        own = c.get(f"/api/sessions/{a.sid}/session.dragkit.json").text
        for seed in ({"$blob": ref}, {"$blob": "../../" + ref}, "x" * 100_000):
            err = a.error(type="open", data=session_file(own, seed=seed))
            seen.append(json.dumps(err))
            assert err["code"] == "rejected" and "seed" in err["message"], err
        # The attack's second half: other tabs evict A, a download reloads it from disk.
        a.close()
        others = []
        for _ in range(5):
            others.append(open_tab())
            others[-1].close()
        assert a.sid not in app.state.server.tabs  # evicted: the download below reads the disk
        for r in (c.get(f"/api/sessions/{t.sid}/session.dragkit.json") for t in [a, *others]):
            assert r.status_code == 200
            seen.append(r.text)
        seen.extend(json.dumps(m) for t in [a, *others] for m in t.seen)
    assert all(marker not in s for s in seen)


@pytest.mark.parametrize("where", ["current.engine.latent", "current.engine.seed", "undo.0.engine.w0"])
@pytest.mark.parametrize("target", ["absolute", "dotdot", "missing"])
def test_tampered_store_cannot_point_outside_and_does_not_tell_if_paths_exist(
        model_home, sessions_dir, private, where, target):
    """A session folder edited behind the server's back (another user, a restored backup)."""
    path, marker = private
    ref = {"absolute": str(path.with_suffix("")),
           "dotdot": "../" * 12 + str(path.with_suffix("")).lstrip("/"),
           "missing": str(path.parent / "does-not-exist")}[target]
    with TestClient(create_app("tiny", sessions_dir=sessions_dir)) as c, tabs(c) as open_tab:
        a = open_tab()
        a.do(type="add_point", handle=[3, 3], target=[9, 9])
        sid = a.sid
    doc_path = Path(sessions_dir) / sid / "session.json"
    doc = json.loads(doc_path.read_text())
    node = doc
    *parents, leaf = where.split(".")
    for k in parents:
        node = node[int(k)] if k.isdigit() else node[k]
    node[leaf] = {"$blob": ref}
    doc_path.write_text(json.dumps(doc))
    with TestClient(create_app("tiny", sessions_dir=sessions_dir)) as c:  # a restarted server
        r = c.get(f"/api/sessions/{sid}/session.dragkit.json")
        assert r.status_code == 404 and marker not in r.text
        assert "private" not in r.text and str(path.parent) not in r.text and "exist" not in r.text
        assert r.json() == {"error": f"saved session {sid} could not be reopened "
                                     "(saved session is damaged (malformed blob reference))"}
        with c.websocket_connect("/ws") as ws:  # the tab gets one clear error and a fresh edit
            ws.send_text(json.dumps({"type": "hello", "id": 1, "session": sid}))
            frames = [ws.receive_json() for _ in range(3)]
        kinds = [f["type"] for f in frames]
        assert kinds == ["error", "welcome", "state"] and frames[1]["session"] != sid, frames
        assert "could not be reopened" in frames[0]["message"]
        assert all(marker not in json.dumps(f) and str(path.parent) not in json.dumps(f) for f in frames)


def test_library_set_state_validates_every_field():
    G = tiny_generator()
    s = DragSession(G, seed=3)
    s.add_point((4, 4), (9, 9))
    good = s.get_state()
    bad = {
        "seed": {"$blob": "/etc/passwd"}, "psi": "0.7", "points": [{"handle": [1, 2], "target": [3, 4], "w": 1}],
        "options": {"r1": "huge"}, "mask": {"shape": [16, 16], "packbits": 7}, "w0": {"shape": [1], "data": 5},
        "model": {"img_resolution": 16.0, "num_ws": 6, "w_dim": 16}, "history": {"undo": "all"},
        "format": "dragkit-sessions", "version": True, "latent": None, "extra": 1,
    }
    for key, value in bad.items():
        st = json.loads(json.dumps(good))
        st[key] = value
        before = s.get_state()
        with pytest.raises(DragkitError) as info:
            s.set_state(st)
        msg = str(info.value)
        assert "\n" not in msg and len(msg) < 300, msg
        assert s.get_state() == before  # nothing changed
    # within types but outside this model: refused before decoding
    for change in ({"latent": {"shape": [1, 64, 8192], "dtype": "float32", "data": "AAAA"}},
                   {"mask": {"shape": [4096, 4096], "packbits": "AA=="}},
                   {"points": [{"handle": [99, 1], "target": [1, 1]}]}):
        st = {**good, **change}
        with pytest.raises(DragkitError):
            s.set_state(st)


def test_session_file_limits_and_no_paths_in_errors(tmp_path):
    G = tiny_generator()
    with pytest.raises(DragkitError, match="larger than"):
        DragSession.from_bytes(b" " * (64 * 2**20 + 1), G)
    with pytest.raises(DragkitError, match="nests too deeply|not a dragkit"):
        DragSession.from_bytes(b"[" * 100_000, G)
    with pytest.raises(DragkitError, match="NaN"):
        DragSession.from_bytes(b'{"format": "dragkit-session", "psi": NaN}', G)
    s = DragSession(G, seed=1)
    state = s.get_state()
    state["points"] = [{"handle": [1.0, 1.0], "target": [2.0, 2.0]}] * 69
    with pytest.raises(DragkitError, match="at most 68") as info:
        DragSession.from_bytes(json.dumps(state).encode(), G)
    assert "/" not in str(info.value).split("(got")[0]  # from bytes: no path to name


def test_history_entries_are_checked_against_the_model():
    G = tiny_generator()
    s = DragSession(G, seed=1)
    s.add_point((4, 4), (12, 6))
    s.set_mask(np.ones((16, 16), bool))
    list(s.run(max_steps=2))
    state = s.get_state()
    assert state["history"]["undo"], "the drag should be in the history"
    state["history"]["undo"][0]["before"]["latent"]["shape"] = [1, 6, 17]
    with pytest.raises(DragkitError, match="history.undo"):
        DragSession(G).set_state(state)
