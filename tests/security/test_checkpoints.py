"""Findings 2, 3, 4 and the pickle half of 7: hostile checkpoints are refused cheaply.

The hangs and allocations run in a child process under ``RLIMIT_AS``
(1.5 GB above its size after start-up) with a per-case alarm
(``sec_child.py``): each must end in a clean ``DragkitError`` within a
second and without growing the process, where the old code walked 2^40
tuples or allocated 360 GB.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

import sec_hostile as H
from dragkit.errors import CheckpointError
from dragkit.formats import load_checkpoint
from dragkit.formats.torchload import SAFE_TORCH, torch_is_safe

pytestmark = [pytest.mark.security, pytest.mark.timeout(180)]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def attack_results(child_run):
    return child_run["attacks"]


EXPECT = {
    "tuple chain, 2^40 paths (finding 3)": "not an NVIDIA network object",
    "init kwargs sharing one list 2^40 ways": "too large",
    "module tree sharing submodules 2^19 ways": "more than 100,000 modules",
    "module tree nesting 40 deep": "nests too deeply",
    "w_dim 300000 (finding 4)": "w_dim",
    "w_dim -5": "w_dim",
    "img_resolution 131072": "img_resolution",
    "largest accepted sizes, no tensors to match": "more memory than the file's tensors hold",
    "zero-stride tensors claiming [300000, 300000]": "storage holds 1",
    "BUILD on a tensor growing it past its storage (finding 7)": "BUILD on a tensor",
    "storage blob claiming 10^11 floats": "declares 100000000000 elements, holds 4 bytes",
    "native num_layers 10^7": "num_layers",
    "native 32 layers of 8192 features, tiny file": "more memory than the file's tensors hold",
    "native img_resolution 32.5": "img_resolution",
    ".pt with zero-stride tensors": "zero or overlapping strides",
    "native discriminator declaring 4096 px x 8192 channels": "more memory than the file's tensors hold",
    "native discriminator img_resolution 32.5": "img_resolution",
    "pickled discriminator img_resolution 131072": "img_resolution",
    "pickled discriminator 4096 px, no tensors": "more memory than the file's tensors hold",
    "session latent claiming 64 x 8192 codes": "this model needs [1, 6, 16]",
    "session with 300 point pairs": "at most 68",
    "session seed of 7 MB": "seed",
    "session seed {$blob: /etc/passwd}": "seed",
    "session r1 = 64 on a 16 px image": "r1 must be at most 8",
    "TF pickle declaring 4096 px x 8192 features, tiny variables": "more memory than the file's tensors hold",
    "TF network components nesting 12 deep": "nest too deeply",
    "TF network state sharing one list 4^10 ways": "too large",
    "TF network state smuggling builtins.exec": "refusing to load global 'builtins.exec'",
    "TF network state holding an allowed callable": "refusing a callable (OrderedDict)",
    "StyleGAN3 record: 64 layers of 8192 channels, no tensors": "more memory than the file's tensors hold",
    "StyleGAN3 record: filter_size 10^6": "filter_size",
    "PNG bomb as a 16 px mask (finding 5)": "must be 16x16 pixels, got 13000x13000",
    "PNG bomb as an image": "13000x13000",
}


@pytest.mark.parametrize("case", list(EXPECT))
def test_attack_is_refused_quickly_without_growing_memory(attack_results, case):
    r = attack_results[case]
    assert r["outcome"] == "refused", r
    assert EXPECT[case] in r["message"], r
    assert "\n" not in r["message"] and "Traceback" not in r["message"]
    assert r["seconds"] < 3.0, r  # the 2^k walks took 11 s at depth 22 before; 2^40 never ends
    assert r["peak_growth_mb"] < 200, r  # 360 GB / 2.6 GB / 664 MB before
    assert not r["side_effects"], r


def test_tf_build_module_src_is_never_run(attack_results):
    """A TensorFlow pickle whose embedded source would write a file: it loads, and nothing ran (audit hook)."""
    r = attack_results["TF build_module_src that writes a file (loads, runs nothing)"]
    assert r["outcome"] == "loaded" and r["result"] == "Generator 16px, tf-pkl, sentinel exists: False", r
    assert not r["side_effects"], r  # no exec/compile of module_src, no write outside the case folder


def test_the_attacks_are_live_under_plain_loaders(tmp_path):
    """Controls: what the files do to a loader that trusts them."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = pickle.loads(H.build_on_tensor_pickle(1_000_000))["G_ema"]["t"]
    assert t.numel() == 1_000_000  # Tensor.__setstate__ grew a 1-float storage to 4 MB
    torch.save({"w": torch.zeros(1).expand(300_000, 300_000)}, tmp_path / "z.pt")
    fake = torch.load(tmp_path / "z.pt", weights_only=True)["w"]
    assert fake.numel() == 9 * 10**10 and fake.untyped_storage().nbytes() == 4  # torch.load accepts it
    assert len(H.tuple_bomb(40)) < 400  # 2^40 paths in a few hundred bytes


def test_torch_floor_is_declared_and_enforced(tmp_path, monkeypatch):
    pyproject = (HERE.parents[1] / "pyproject.toml").read_text()
    assert '"torch>=2.10"' in pyproject
    assert SAFE_TORCH == "2.10" and torch_is_safe("2.10.0") and torch_is_safe("2.13.0+cpu")
    assert not torch_is_safe("2.9.1") and not torch_is_safe("2.5.0")
    G = H.tiny_generator()
    torch.save(G.state_dict(), tmp_path / "g.pt")
    (tmp_path / "g.pkl").write_bytes(H.nvidia_pickle(G))
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(CheckpointError, match=r"PyTorch 2\.5\.1.*CVE-2025-32434.*torch>=2\.10"):
        load_checkpoint(tmp_path / "g.pt")
    # .pkl storages never reach torch.load, so they load on any torch.
    def no_torch_load(*a, **k):
        raise AssertionError("torch.load was called for a .pkl")

    monkeypatch.setattr(torch, "load", no_torch_load)
    G2 = load_checkpoint(tmp_path / "g.pkl")
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))


class _Exec:
    def __reduce__(self):
        return (exec, ("open('/tmp/dragkit-sec-pwned', 'w')",))


class _Path:
    def __reduce__(self):
        import pathlib

        return (pathlib.PosixPath, ("/etc/passwd",))


@pytest.mark.parametrize("payload,name", [(_Exec(), "builtins.exec"), (_Path(), "pathlib.PosixPath")])
def test_refused_pt_names_the_global_and_never_suggests_weights_only_false(tmp_path, payload, name):
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": payload}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert f"refusing to load global '{name}'" in msg and "weights_only" not in msg and "\x1b" not in msg, msg
    assert not Path("/tmp/dragkit-sec-pwned").exists()


def test_refused_training_checkpoint_too(tmp_path):
    from dragkit.train.checkpoint import load_checkpoint as load_train

    torch.save({"format": "dragkit-train-checkpoint", "version": 1, "x": _Exec()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="refusing to load global 'builtins.exec'"):
        load_train(tmp_path / "checkpoint.pt")


def test_legacy_storage_blobs_are_parsed_not_loaded():
    from dragkit.formats.legacy_storage import decode_storage_blob

    for dtype in (torch.float32, torch.float16, torch.int64, torch.bool, torch.bfloat16):
        t = (torch.arange(7) % 3).to(dtype)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blob = t.storage().__reduce__()[1][0]
        ref = decode_storage_blob(blob)
        got = torch.empty((0,), dtype=ref.dtype).set_(ref.untyped, 0, (7,), (1,))
        assert ref.dtype == dtype and torch.equal(got, t)
    hostile = pickle.dumps(_Exec(), protocol=2)  # a blob that is itself a hostile pickle
    with pytest.raises(CheckpointError, match=r"refusing global '(__builtin__|builtins)\.exec'"):
        decode_storage_blob(hostile)
    for bad in (H.storage_blob(2, b"\0" * 4), H.storage_blob(1, b"\0" * 8), b"", io.BytesIO().getvalue()):
        with pytest.raises(CheckpointError, match="unreadable tensor storage"):
            decode_storage_blob(bad)
