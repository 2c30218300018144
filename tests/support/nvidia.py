"""NVIDIA's pickle layout, built in the tests: stand-in ``torch_utils.persistence`` and
``dnnlib`` modules whose objects reduce exactly as NVIDIA's persistent classes do.

``(_reconstruct_persistent_obj, (meta,))`` with ``meta = dict(type='class',
version=6, module_src=..., class_name=..., state=__dict__)`` and nested
persistent submodules.  The embedded ``module_src`` writes a sentinel file
when executed, so a loader that ran it would be caught.  The
``nvidia_modules`` fixture (``tests/conftest.py``) registers the modules for
one test.
"""
from __future__ import annotations

import copy
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from dragkit.nets import Generator

__all__ = ["StandIn", "Persistent", "install", "persist", "nvidia_snapshot", "side_networks", "write_pickle", "hostile_payloads"]


class StandIn:
    """Handles on the stand-in NVIDIA modules registered for one test."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel
        self.reconstruct_calls = 0
        # NVIDIA's loader execs this text; a safe loader must never do so.
        self.module_src = (
            "# networks.py as embedded by torch_utils.persistence\n"
            f"open({str(sentinel)!r}, 'w').write('module_src was executed')\n"
            "class Generator: pass\n"
        )


def install(monkeypatch, sentinel: Path) -> StandIn:
    """Register stand-in ``torch_utils.persistence`` and ``dnnlib`` modules (undone by ``monkeypatch``)."""
    handle = StandIn(sentinel)

    def _reconstruct_persistent_obj(meta):  # what NVIDIA's does: exec module_src
        handle.reconstruct_calls += 1
        ns: dict = {}
        exec(meta["module_src"], ns)  # noqa: S102 - the hazard under test
        return ns

    class EasyDict(dict):
        pass

    for fn, module, name in ((_reconstruct_persistent_obj, "torch_utils.persistence", "_reconstruct_persistent_obj"),
                             (EasyDict, "dnnlib.util", "EasyDict")):
        fn.__module__, fn.__qualname__ = module, name
        package, sub = module.split(".")
        top, mod = types.ModuleType(package), types.ModuleType(module)
        setattr(mod, name, fn)
        setattr(top, sub, mod)
        monkeypatch.setitem(sys.modules, package, top)
        monkeypatch.setitem(sys.modules, module, mod)
    handle.reconstruct = _reconstruct_persistent_obj
    handle.EasyDict = EasyDict
    return handle


class Persistent:
    """Reduces like an object of an NVIDIA ``@persistent_class``."""

    def __init__(self, reconstruct, module_src: str, class_name: str, state: dict) -> None:
        self.reconstruct, self.module_src, self.class_name, self.state = reconstruct, module_src, class_name, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (self.reconstruct, (meta,))


def persist(nv: StandIn, module: torch.nn.Module, init_kwargs: dict | None = None, class_name: str | None = None) -> Persistent:
    """NVIDIA's reduction of a module: its ``__dict__`` with persistent submodules."""
    state = dict(module.__dict__)
    state["_modules"] = {k: persist(nv, m) for k, m in module._modules.items()}
    state["_parameters"] = OrderedDict(module._parameters)
    state["_init_args"] = ()
    state["_init_kwargs"] = init_kwargs if init_kwargs is not None else {}
    for k, v in list(state.items()):  # NVIDIA stores gains as numpy floats (np.sqrt)
        if k.endswith("_gain") and isinstance(v, float):
            state[k] = np.float64(v)
    state.pop("init_kwargs", None)
    return Persistent(nv.reconstruct, nv.module_src, class_name or type(module).__name__, state)


def side_networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    """Stand-ins for what a training snapshot holds beside the generators: ``(D, augment_pipe)``
    (a 4 x 4 ``fc`` weight; one buffer ``p``)."""
    D = torch.nn.Module()
    D.fc = torch.nn.Module()
    D.fc.weight = torch.nn.Parameter(torch.randn(4, 4))
    augment = torch.nn.Module()
    augment.register_buffer("p", torch.zeros([]))
    return D, augment


def nvidia_snapshot(nv: StandIn, G: Generator, layout: str = "ada", init_kwargs: dict | None = None) -> dict:
    """A training snapshot dict as stylegan2-ada-pytorch / stylegan3 write it."""
    ik = G.init_kwargs
    if init_kwargs is None:
        mk = nv.EasyDict(ik["mapping_kwargs"])
        sk = nv.EasyDict(ik["synthesis_kwargs"], num_fp16_res=2, conv_clamp=ik["synthesis_kwargs"].get("conv_clamp"))
        base = {k: ik[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
        if layout == "ada":
            init_kwargs = dict(base, mapping_kwargs=mk, synthesis_kwargs=sk)
        else:  # stylegan3 code base: synthesis kwargs passed flat
            init_kwargs = dict(base, mapping_kwargs=mk, **sk, fused_modconv_default="inference_only")
    D, augment = side_networks()
    return dict(
        G=persist(nv, copy.deepcopy(G).train(), init_kwargs),
        D=persist(nv, D, {"c_dim": G.c_dim, "img_resolution": G.img_resolution}, class_name="Discriminator"),
        G_ema=persist(nv, G, init_kwargs),
        augment_pipe=persist(nv, augment, {"xflip": 1}, class_name="AugmentPipe"),
        training_set_kwargs=nv.EasyDict(class_name="training.dataset.ImageFolderDataset", path="/data/x.zip", use_labels=bool(G.c_dim)),
        progress=dict(cur_nimg=np.int64(1000), batch_size=32),
    )


def write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return path


# -- hostile pickles ---------------------------------------------------------


def pickle_global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def hostile_payloads(sentinel: Path) -> dict[str, bytes]:
    """Hand-made pickles (protocol 0 opcodes) that would create ``sentinel``."""
    s = str(sentinel)
    cmd = f"touch {s}".encode()
    code = f"open({s!r}, 'w').write('x')".encode()
    return {
        "os.system": b"(dp0\nS'G_ema'\n" + pickle_global("os", "system") + b"(S'" + cmd + b"'\ntRs.",
        "builtins.eval": pickle_global("builtins", "eval") + b"(S\"" + code + b"\"\ntR.",
        "subprocess.Popen": pickle_global("subprocess", "Popen") + b"((S'touch'\nS'" + s.encode() + b"'\nltR.",
        "builtins.exec (nested in a dict)": b"(dp0\nS'a'\n(lp1\n" + pickle_global("builtins", "exec") + b"(S\"" + code + b"\"\ntRas.",
    }
