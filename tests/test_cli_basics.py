"""``dragkit generate`` / ``convert`` / bad input, run as a user runs them (a subprocess).

Bad input must give exactly one line on stderr (``dragkit: error: ...``), a
non-zero exit, no traceback, and no output file.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit.formats import save_native
from dragkit.utils import atomic_path, atomic_write_bytes, tensor_to_uint8

from support.generators import make_generator
from support.nvidia import hostile_payloads, nvidia_snapshot, write_pickle


def dragkit(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DRAGKIT_HOME=str(home), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "dragkit.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dragkit: error: ") and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_generate_from_native_matches_python_api(tmp_path):
    G = make_generator()
    save_native(G, tmp_path / "tiny")
    out = tmp_path / "img.png"
    proc = dragkit("generate", "--model", str(tmp_path / "tiny.safetensors"), "--seed", "4", "--psi", "0.7",
                   "--out", str(out), "--latent-out", str(tmp_path / "w.npy"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        expected = tensor_to_uint8(G.synthesis(G.ws_from_seed(4, psi=0.7), noise_mode="const"))
    assert np.array_equal(np.asarray(Image.open(out)), expected)
    assert np.load(tmp_path / "w.npy").shape == (1, G.num_ws, G.w_dim)


def test_generate_a_grid_of_seeds_and_refuse_bad_seeds(tmp_path):
    G = make_generator()
    save_native(G, tmp_path / "tiny")
    model, out = str(tmp_path / "tiny.safetensors"), tmp_path / "grid.png"
    proc = dragkit("generate", "--model", model, "--seed", "3-5,9", "--cols", "3", "--out", str(out),
                   "--latent-out", str(tmp_path / "w.npy"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    grid = np.asarray(Image.open(out)).astype(int)
    R = G.img_resolution
    assert grid.shape == (2 * R, 3 * R, 3)
    with torch.no_grad():
        for k, seed in enumerate([3, 4, 5, 9]):  # row by row; the empty cell is black
            one = tensor_to_uint8(G.synthesis(G.ws_from_seed(seed, psi=0.7), noise_mode="const")).astype(int)
            cell = grid[(k // 3) * R : (k // 3 + 1) * R, (k % 3) * R : (k % 3 + 1) * R]
            assert np.abs(cell - one).max() <= 1  # a batch of 4 vs 1: float summation order only
    assert (grid[R:, R:] == 0).all()
    assert np.load(tmp_path / "w.npy").shape == (4, G.num_ws, G.w_dim)
    for bad, needle in [("-5", "between 0 and 4294967295"), ("5000000000", "between 0 and 4294967295"),
                        ("7-2", "runs backwards"), ("x", "whole number"), ("0-5000", "at most 1024")]:
        proc = dragkit("generate", "--model", model, "--seed", bad, "--out", str(tmp_path / "bad.png"), home=tmp_path)
        assert_one_line_error(proc, needle)
        assert not (tmp_path / "bad.png").exists()


def test_convert_nvidia_pickle_to_native(nvidia_modules, tmp_path):  # noqa: F811
    G = make_generator(architecture="resnet")
    pkl = write_pickle(tmp_path / "net.pkl", nvidia_snapshot(nvidia_modules, G))
    proc = dragkit("convert", str(pkl), str(tmp_path / "conv"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from dragkit.formats import load_checkpoint

    G2 = load_checkpoint(tmp_path / "conv.safetensors")
    z = G.z_from_seed(0)
    with torch.no_grad():
        assert torch.equal(G2(z, None, truncation_psi=0.7), G(z, None, truncation_psi=0.7))
    assert G2.dragkit_metadata["converted_from"] == "net.pkl"


@pytest.mark.parametrize("kind", ["truncated", "zero-byte", "wrong-extension", "hostile"])
def test_bad_checkpoints_give_one_line(nvidia_modules, tmp_path, kind):  # noqa: F811
    sentinel = tmp_path / "SENTINEL"
    if kind == "truncated":
        data = write_pickle(tmp_path / "t.pkl", nvidia_snapshot(nvidia_modules, make_generator())).read_bytes()
        path = tmp_path / "t.pkl"
        path.write_bytes(data[: len(data) // 2])
        needles = ["t.pkl", "truncated or corrupt"]
    elif kind == "zero-byte":
        path = tmp_path / "empty.pkl"
        path.write_bytes(b"")
        needles = ["empty.pkl", "empty file"]
    elif kind == "wrong-extension":
        path = tmp_path / "model.bin"
        path.write_bytes(b"\x00" * 64)
        needles = ["unsupported checkpoint extension '.bin'"]
    else:
        path = tmp_path / "evil.pkl"
        path.write_bytes(hostile_payloads(sentinel)["os.system"])
        needles = ["refusing to load global 'os.system'"]
    out = tmp_path / "out"
    proc = dragkit("convert", str(path), str(out), home=tmp_path)
    assert_one_line_error(proc, *needles)
    assert not list(tmp_path.glob("out*")) and not sentinel.exists()


def test_unknown_model_lists_available(tmp_path):
    save_native(make_generator(), tmp_path / "home" / "mymodel")
    out = tmp_path / "x.png"
    proc = dragkit("generate", "--model", "no-such-model", "--seed", "0", "--out", str(out), home=tmp_path / "home")
    line = assert_one_line_error(proc, "unknown model 'no-such-model'", "available models:", "mymodel")
    assert "toy" in line or "mymodel" in line
    assert not out.exists()


def test_atomic_writes_keep_the_old_file_on_failure_and_get_the_umask_mode(tmp_path):
    dest = tmp_path / "out.bin"
    atomic_write_bytes(dest, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half a new fi")
            raise RuntimeError("writer died")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary file left behind
    old = os.umask(0o027)
    try:
        atomic_write_bytes(dest, b"new", durable=True)
    finally:
        os.umask(old)
    assert dest.read_bytes() == b"new" and (dest.stat().st_mode & 0o777) == 0o640
