"""Fixtures of the hostile-input suite (``pytest -m security``; see docs/security.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from sec_web import make_home


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def model_home(tmp_path_factory):
    """``$DRAGKIT_HOME`` holding a tiny random 32 px generator named ``tiny``."""
    home = make_home(tmp_path_factory.mktemp("sec-home"))
    old = os.environ.get("DRAGKIT_HOME")
    os.environ["DRAGKIT_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("DRAGKIT_HOME", None)
    else:
        os.environ["DRAGKIT_HOME"] = old


@pytest.fixture
def sessions_dir(tmp_path):
    return tmp_path / "sessions"


@pytest.fixture
def client(model_home, sessions_dir):
    from dragkit.server.app import create_app

    with TestClient(create_app("tiny", sessions_dir=sessions_dir)) as c:
        yield c


HERE = Path(__file__).resolve().parent
FUZZ_SEED = int(os.environ.get("DRAGKIT_FUZZ_SEED", "20260417"))
FUZZ_CASES = int(os.environ.get("DRAGKIT_FUZZ_CASES", "300"))
FUZZ_SECONDS = float(os.environ.get("DRAGKIT_FUZZ_SECONDS", "25"))


@pytest.fixture(scope="session")
def child_run(tmp_path_factory):
    """The hostile-file attacks and the fuzz, in one child process under a memory limit (sec_child.py)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    root = tmp_path_factory.mktemp("child")
    proc = subprocess.run([sys.executable, str(HERE / "sec_child.py"), "all", str(root), str(FUZZ_SEED),
                           str(FUZZ_CASES), str(FUZZ_SECONDS)], capture_output=True, text=True,
                          timeout=FUZZ_SECONDS + 240, env=env, cwd=str(HERE))
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert proc.returncode == 0 and lines and lines[-1].get("done"), proc.stderr[-3000:]
    assert lines[0]["limit_bytes"] > 0
    return {"attacks": {d["case"]: d for d in lines if "case" in d}, "fuzz": lines[-1]}
