"""Fixtures shared by the test files; their helpers are in ``tests/support/``.

* ``one_thread`` - torch on one CPU thread for the whole run (autouse: drag
  steps and the server's compute thread are small, extra threads only spin
  on a shared machine).
* ``device`` - ``"cpu"``, plus ``"cuda"`` where a GPU is present (skipped
  otherwise): tests of ``nets`` and ``drag`` that take it run on both, so
  the CUDA path is exercised wherever there is one.
* ``model_home`` - ``$DRAGKIT_HOME`` with the tiny random ``tiny`` model
  (the web-app tests), restored afterwards.
* ``toy`` - the bundled ``toy`` model (missing: a failure, never a skip:
  without it the drag engine has no ground truth).
* ``nvidia_modules`` - stand-in NVIDIA modules for building pickles.
* ``GH``, ``G3`` - a tiny 32 x 16 StyleGAN-Human-layout StyleGAN2 and a tiny
  32 px StyleGAN3-T (``support.generators.human`` / ``sg3``), one per test module.
"""
from __future__ import annotations

import os

import pytest
import torch

from support.generators import human, make_home, sg3
from support.nvidia import install


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                   reason="no CUDA device here"))]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """A device to run on.  On CUDA, TF32 is off while the test runs: the tests compare
    against float32 references at float32 tolerances."""
    if request.param != "cuda":
        yield request.param
        return
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield request.param
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@pytest.fixture(scope="module")
def model_home(tmp_path_factory):
    """``$DRAGKIT_HOME`` holding a tiny random 32 px generator named ``tiny``."""
    home = make_home(tmp_path_factory.mktemp("dragkit-home"))
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


@pytest.fixture(scope="session")
def toy():
    """The bundled ``toy`` generator, frozen."""
    from dragkit import load_model
    from dragkit.errors import ModelNotFoundError

    try:
        G = load_model("toy")
    except ModelNotFoundError as exc:
        pytest.fail(f"the bundled toy model is missing, so the drag engine has no ground truth: {exc}")
    return G.requires_grad_(False)


@pytest.fixture
def nvidia_modules(monkeypatch, tmp_path):
    """Register stand-in ``torch_utils.persistence`` and ``dnnlib`` modules for one test."""
    return install(monkeypatch, tmp_path / "SENTINEL_module_src")


@pytest.fixture(scope="module")
def GH():
    """A 32 x 16 (H x W) StyleGAN2 in StyleGAN-Human's layout, one per module."""
    return human(0)


@pytest.fixture(scope="module")
def G3():
    """A 32 px 6-layer StyleGAN3-T, one per module."""
    return sg3(3)
