"""Real file layouts of the DragGAN world's checkpoints, built inside the tests (no downloads).

Stand-in modules (registered in ``sys.modules`` for one test) whose objects
pickle exactly as the originals do:

* ``torch_utils.persistence._reconstruct_persistent_obj`` - NVIDIA's
  persistent networks reduce to it with ``meta = dict(type='class',
  version=6, module_src=..., class_name=..., state=__dict__)``;
* ``dnnlib.util.EasyDict`` and ``dnnlib.EasyDict``;
* ``dnnlib.tflib.network.Network`` - TensorFlow-era networks pickle as
  ``copyreg.__newobj__(Network)`` followed by a ``BUILD`` with the dict of
  its ``__getstate__`` (``version``, ``name``, ``static_kwargs``,
  ``components``, ``build_module_src``, ``build_func_name``,
  ``variables``).

Each stand-in does what the original's loader does when the file is
unpickled by plain ``pickle``: the persistence reconstructor and
``Network.__setstate__`` execute the embedded source, which writes a
sentinel file.  A loader that ran anything from the file would leave it.

The snapshot builders take dragkit networks with random weights and lay
them out as each code base writes them (init arguments nested or flat,
positional, StyleGAN-Human's ``square`` argument, fp16 blocks with
``channels_last`` weights, NVIDIA's legacy-converter kwargs, ...).
"""
from __future__ import annotations

import copy
import pickle
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from support.generators import frozen, randomize, randomize_stylegan3
from support.nvidia import side_networks


@dataclass
class StandIns:
    """Handles on the stand-in modules registered for one test."""

    sentinel: Path
    calls: list = field(default_factory=list)
    reconstruct: Any = None
    EasyDict: Any = None
    Network: Any = None

    @property
    def module_src(self) -> str:
        # What NVIDIA's loaders exec: a safe loader must never run it.
        return ("# networks.py as embedded by torch_utils.persistence / dnnlib.tflib.network\n"
                f"open({str(self.sentinel)!r}, 'w').write('embedded source was executed')\n")

    def ran(self) -> bool:
        """Whether anything from a file was executed (the sentinel exists or a stand-in was called)."""
        return self.sentinel.exists() or bool(self.calls)


@pytest.fixture
def standins(monkeypatch, tmp_path) -> StandIns:
    """Register stand-in ``torch_utils.persistence``, ``dnnlib`` and ``dnnlib.tflib.network`` modules."""
    handle = StandIns(tmp_path / "SENTINEL_embedded_source")

    def _reconstruct_persistent_obj(meta):  # NVIDIA's: exec module_src, then build the object
        handle.calls.append("persistence")
        exec(meta["module_src"], {})  # noqa: S102 - the hazard under test
        return meta

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"

    class Network:
        """``dnnlib.tflib.network.Network``: pickles its state dict; unpickling execs ``build_module_src``."""

        def __init__(self, state: dict) -> None:
            self._state = state

        def __getstate__(self) -> dict:
            return self._state

        def __setstate__(self, state: dict) -> None:  # what NVIDIA's does first
            handle.calls.append("Network.__setstate__")
            exec(state["build_module_src"], {})  # noqa: S102 - the hazard under test
            self._state = state

    Network.__module__ = "dnnlib.tflib.network"
    Network.__qualname__ = "Network"

    torch_utils = types.ModuleType("torch_utils")
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils.persistence = persistence
    dnnlib = types.ModuleType("dnnlib")
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    dnnlib.util = util
    dnnlib.EasyDict = EasyDict
    tflib = types.ModuleType("dnnlib.tflib")
    network = types.ModuleType("dnnlib.tflib.network")
    network.Network = Network
    tflib.network = network
    dnnlib.tflib = tflib
    for name, mod in [("torch_utils", torch_utils), ("torch_utils.persistence", persistence), ("dnnlib", dnnlib),
                      ("dnnlib.util", util), ("dnnlib.tflib", tflib), ("dnnlib.tflib.network", network)]:
        monkeypatch.setitem(sys.modules, name, mod)
    handle.reconstruct, handle.EasyDict, handle.Network = _reconstruct_persistent_obj, EasyDict, Network
    return handle


# --------------------------------------------------------------------------------------------------
# PyTorch persistent objects.


class Persistent:
    """Reduces like an object of an NVIDIA ``@persistent_class``."""

    def __init__(self, nv: StandIns, class_name: str, state: dict) -> None:
        self.nv, self.class_name, self.state = nv, class_name, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.nv.module_src, class_name=self.class_name,
                    state=self.state)
        return (self.nv.reconstruct, (meta,))

    def sub(self, *names: str) -> "Persistent":
        rec = self
        for name in names:
            rec = rec.state["_modules"][name]
        return rec


def persist(nv: StandIns, module: torch.nn.Module, init_kwargs: dict | None = None, init_args: tuple = (),
            class_name: str | None = None, channels_last: bool = False) -> Persistent:
    """NVIDIA's reduction of a module: its ``__dict__`` with persistent submodules.

    ``channels_last`` stores 4-D weights in channels-last memory order, as
    stylegan2-ada's fp16 blocks with ``fp16_channels_last`` do (the
    pickle then records their strides).
    """
    state = dict(module.__dict__)
    state["_modules"] = {k: persist(nv, m, channels_last=channels_last) for k, m in module._modules.items()}
    params = OrderedDict()
    for k, p in module._parameters.items():
        if p is not None and channels_last and p.ndim == 4:
            p = torch.nn.Parameter(p.detach().to(memory_format=torch.channels_last), requires_grad=False)
        params[k] = p
    state["_parameters"] = params
    state["_buffers"] = OrderedDict(module._buffers)
    state["_init_args"] = tuple(init_args)
    state["_init_kwargs"] = init_kwargs if init_kwargs is not None else {}
    for k, v in list(state.items()):  # NVIDIA stores gains as numpy floats (np.sqrt)
        if k.endswith("_gain") and isinstance(v, float):
            state[k] = np.float64(v)
    state.pop("init_kwargs", None)
    return Persistent(nv, class_name or type(module).__name__, state)


def write_pickle(path: Path, obj: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def random_stylegan2(seed: int = 0, *, res: int = 16, c_dim: int = 0, square: bool = True, num_layers: int = 2,
                     z_dim: int = 16, w_dim: int = 16, **syn: Any):
    """A small dragkit StyleGAN2 generator whose zero-initialised tensors are random too."""
    from dragkit.nets import Generator

    torch.manual_seed(seed)
    syn = {"channel_base": 8 * res, "channel_max": 16, **syn}
    if not square:
        syn["square"] = False
    G = Generator(z_dim, c_dim, w_dim, res, 3, mapping_kwargs={"num_layers": num_layers}, synthesis_kwargs=syn)
    return frozen(randomize(G, seed + 1))


def random_stylegan3(seed: int = 0, *, res: int = 16, c_dim: int = 0, radial: bool = False, **syn: Any):
    """A small dragkit StyleGAN3 generator (config T, or R with ``radial``) with trained-looking values."""
    from dragkit.nets import StyleGAN3Generator

    torch.manual_seed(seed)
    kw = dict(channel_base=256, channel_max=16, num_layers=4)
    if radial:
        kw.update(conv_kernel=1, use_radial_filters=True, channel_base=512, channel_max=32)
    kw.update(syn)
    G = StyleGAN3Generator(8, c_dim, 8, res, 3, **kw)
    return frozen(randomize_stylegan3(G, seed + 1))


def render(G: Any, seed: int = 3, psi: float = 0.7, label: int = 1) -> torch.Tensor:
    """NVIDIA's usual call: z from the seed, a one-hot class for conditional models, psi, const noise."""
    z = G.z_from_seed(seed)
    c = None
    if G.c_dim:
        c = torch.zeros([1, G.c_dim])
        c[0, label % G.c_dim] = 1
    with torch.no_grad():
        return G(z, c, truncation_psi=psi, noise_mode="const")


def _side_networks(nv: StandIns, G: Any) -> dict:
    D, augment = side_networks()
    return dict(
        D=persist(nv, D, {"c_dim": G.c_dim, "img_resolution": G.img_resolution}, class_name="Discriminator"),
        augment_pipe=persist(nv, augment, {"xflip": 1}, class_name="AugmentPipe"),
        training_set_kwargs=nv.EasyDict(class_name="training.dataset.ImageFolderDataset", path="/data/x.zip",
                                        use_labels=bool(G.c_dim), max_size=None, xflip=False, resolution=G.img_resolution),
    )


def stylegan2_snapshot(nv: StandIns, G: Any, layout: str = "ada", fp16: bool = False,
                       channels_last: bool = False) -> dict:
    """A StyleGAN2 snapshot dict as one code base writes it.

    Layouts: ``'ada'`` (stylegan2-ada-pytorch ``train.py``: nested
    ``mapping_kwargs`` / ``synthesis_kwargs``), ``'sg3'`` (stylegan3 code
    base ``networks_stylegan2``: synthesis arguments flat,
    ``fused_modconv_default``), ``'legacy'`` (what NVIDIA's ``legacy.py``
    records when it converts a TensorFlow pickle: every field explicit,
    ``embed_features``/``layer_features`` None, activations, resample
    filter; no training set or augment pipe), ``'human'`` (StyleGAN-Human's
    ``train.py``: ``square`` a top-level keyword), ``'human-args'``
    (``square`` the fifth positional argument) and ``'human-unrecorded'``
    (no ``square`` anywhere, as the released pickles may be).
    ``fp16`` records ``num_fp16_res=4``, ``conv_clamp=256`` and the blocks'
    ``use_fp16`` flags; ``channels_last`` stores their conv weights in
    channels-last order.
    """
    ik = G.init_kwargs
    syn = {k: v for k, v in ik["synthesis_kwargs"].items() if k != "square"}
    if fp16:
        syn.update(num_fp16_res=4, conv_clamp=256, fp16_channels_last=channels_last)
    mapping = nv.EasyDict(ik["mapping_kwargs"])
    base = {k: ik[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    args: tuple = ()
    square = G.img_width == G.img_height
    if layout == "ada":
        kwargs = dict(base, mapping_kwargs=mapping, synthesis_kwargs=nv.EasyDict(syn))
    elif layout == "sg3":
        kwargs = dict(base, mapping_kwargs=mapping, **syn, fused_modconv_default="inference_only")
    elif layout == "legacy":
        mapping = nv.EasyDict(num_layers=ik["mapping_kwargs"]["num_layers"], embed_features=None, layer_features=None,
                              activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995)
        syn = dict(dict(channel_base=syn["channel_base"], channel_max=syn["channel_max"], num_fp16_res=0, conv_clamp=None,
                        architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True, activation="lrelu"), **syn)
        kwargs = dict(base, mapping_kwargs=mapping, synthesis_kwargs=nv.EasyDict(syn))
    elif layout == "human":
        kwargs = dict(base, mapping_kwargs=mapping, synthesis_kwargs=nv.EasyDict(syn), square=square)
    elif layout == "human-args":
        args = (base["z_dim"], base["c_dim"], base["w_dim"], base["img_resolution"], square, base["img_channels"])
        kwargs = dict(mapping_kwargs=mapping, synthesis_kwargs=nv.EasyDict(syn))
    elif layout == "human-unrecorded":
        kwargs = dict(base, mapping_kwargs=mapping, synthesis_kwargs=nv.EasyDict(syn))
    else:
        raise ValueError(layout)

    def make(net: Any) -> Persistent:
        rec = persist(nv, net, kwargs, args, channels_last=channels_last)
        if layout.startswith("human") and layout != "human-unrecorded":
            rec.state["square"] = square  # StyleGAN-Human's modules store it
            rec.sub("synthesis").state["square"] = square
        if fp16:
            for res in G.synthesis.block_resolutions[-4:]:
                rec.sub("synthesis", f"b{res}").state.update(use_fp16=True, channels_last=channels_last)
        return rec

    snap = dict(G=make(copy.deepcopy(G).train()), G_ema=make(G), **_side_networks(nv, G))
    if layout == "legacy":
        snap.update(training_set_kwargs=None, augment_pipe=None)
    return snap


def stylegan3_snapshot(nv: StandIns, G: Any, *, extra_kwargs: dict | None = None) -> dict:
    """A stylegan3-code-base snapshot of a StyleGAN3 generator, kwargs as NVIDIA's ``train.py`` records them.

    ``train.py`` passes ``z_dim``, ``w_dim``, ``mapping_kwargs``,
    ``channel_base``, ``channel_max``, ``magnitude_ema_beta`` (and for
    config R ``conv_kernel=1``, ``use_radial_filters=True``), the training
    loop adds ``c_dim``, ``img_resolution``, ``img_channels``; the synthesis
    arguments are flat.  Values this tiny net needs beyond NVIDIA's
    defaults (``num_layers``) are recorded too.
    """
    ik = G.init_kwargs
    syn = ik["synthesis_kwargs"]
    kwargs = dict(z_dim=ik["z_dim"], w_dim=ik["w_dim"], mapping_kwargs=nv.EasyDict(ik["mapping_kwargs"]),
                  channel_base=syn["channel_base"], channel_max=syn["channel_max"],
                  magnitude_ema_beta=0.5 ** (32 / (20 * 1e3)),
                  **{k: v for k, v in syn.items() if k not in ("channel_base", "channel_max")},
                  c_dim=ik["c_dim"], img_resolution=ik["img_resolution"], img_channels=ik["img_channels"])
    kwargs.update(extra_kwargs or {})

    def make(net: Any) -> Persistent:
        rec = persist(nv, net, kwargs)
        inp = rec.sub("synthesis", "input")
        inp.state["size"] = np.broadcast_to(np.asarray(net.synthesis.input.size), [2])  # NVIDIA stores arrays
        return rec

    return dict(G=make(copy.deepcopy(G).train()), G_ema=make(G), **_side_networks(nv, G))


# --------------------------------------------------------------------------------------------------
# TensorFlow-era pickles.


def tf_networks(nv: StandIns, state: dict) -> Any:
    """A recorded TF network state (``tests/test_tf_pkl.py`` layout, dicts) -> stand-in ``Network`` objects."""
    state = dict(state)
    state["build_module_src"] = nv.module_src
    state["components"] = {k: tf_networks(nv, v) if isinstance(v, dict) else v
                           for k, v in (state.get("components") or {}).items()}
    return nv.Network(state)


def tf_pickle(nv: StandIns, G_state: dict, D_state: dict, Gs_state: dict | None = None) -> bytes:
    """``pickle.dump((G, D, Gs))`` as NVIDIA's TensorFlow training loop writes it (protocol 3, Python 3.6 era)."""
    return pickle.dumps((tf_networks(nv, G_state), tf_networks(nv, D_state), tf_networks(nv, Gs_state or G_state)),
                        protocol=3)
