"""Builders of the hostile files of issue 17 (and valid seeds for the fuzzer).

Each function returns bytes (or writes files) exactly as an attacker would
craft them; nothing here is dragkit code.  NVIDIA-style persistent objects
reduce to ``torch_utils.persistence._reconstruct_persistent_obj(meta)``
through a stand-in function registered under that name only while pickling.
"""
from __future__ import annotations

import contextlib
import io
import json
import pickle
import struct
import sys
import types
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from dragkit.formats import save_native
from dragkit.nets import Generator

TINY = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
            mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 128, "channel_max": 16})


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(**TINY).eval().requires_grad_(False)


@contextlib.contextmanager
def persistence() -> Iterator[Any]:
    """A stand-in ``torch_utils.persistence._reconstruct_persistent_obj`` to pickle against."""

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called by dragkit
        raise AssertionError("dragkit called the file's reconstructor")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    pkg = types.ModuleType("torch_utils")
    mod = types.ModuleType("torch_utils.persistence")
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg.persistence = mod
    with _registered({"torch_utils": pkg, "torch_utils.persistence": mod}):
        yield _reconstruct_persistent_obj


@contextlib.contextmanager
def _registered(mods: dict[str, types.ModuleType]) -> Iterator[None]:
    """``mods`` in ``sys.modules`` inside the block; what was there before is put back."""
    old = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Persistent:
    """Pickles like an object of an NVIDIA ``@persistent_class``."""

    def __init__(self, recon: Any, class_name: str, state: dict) -> None:
        self.recon, self.class_name, self.state = recon, class_name, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src="raise SystemExit('module_src ran')\n",
                    class_name=self.class_name, state=self.state)
        return (self.recon, (meta,))


def record(recon: Any, module: torch.nn.Module, class_name: str | None = None, init_kwargs: dict | None = None) -> Persistent:
    state = {
        "_parameters": OrderedDict(module._parameters),
        "_buffers": OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(module._non_persistent_buffers_set),
        "_modules": {k: record(recon, m) for k, m in module._modules.items()},
        "_init_args": (),
        "_init_kwargs": init_kwargs or {},
    }
    return Persistent(recon, class_name or type(module).__name__, state)


def nvidia_pickle(G: Generator | None = None, init_kwargs: dict | None = None, protocol: int = 4) -> bytes:
    """A valid NVIDIA-layout snapshot ``{'G_ema': ...}`` of ``G`` (default: the tiny generator)."""
    G = G if G is not None else tiny_generator()
    with persistence() as recon:
        snap = {"G_ema": record(recon, G, "Generator", G.init_kwargs if init_kwargs is None else init_kwargs),
                "progress": {"cur_nimg": np.int64(1000)}}
        return pickle.dumps(snap, protocol=protocol)


def generator_record_pickle(init_kwargs: dict, state: dict | None = None, modules: dict | None = None) -> bytes:
    """``{'G_ema': Generator record}`` with the given kwargs, tensors and submodules (no real network)."""
    with persistence() as recon:
        rec = Persistent(recon, "Generator", {"_parameters": OrderedDict(state or {}), "_buffers": OrderedDict(),
                                               "_modules": modules or {}, "_init_args": (),
                                               "_init_kwargs": init_kwargs})
        return pickle.dumps({"G_ema": rec}, protocol=4)


# -- issue 17, finding 3: exponential walks ----------------------------------------


def tuple_chain(depth: int) -> Any:
    t: Any = ()
    for _ in range(depth):
        t = (t, t)  # each level holds the previous one twice: 2^depth paths, depth objects
    return t


def tuple_bomb(depth: int = 40) -> bytes:
    """A few hundred bytes whose naive walk visits 2^depth tuples."""
    return pickle.dumps({"G_ema": tuple_chain(depth)}, protocol=2)


def kwargs_bomb(depth: int = 40) -> bytes:
    """A generator record whose init kwargs share one list 2^depth ways."""
    t: Any = [0]
    for _ in range(depth):
        t = [t, t]
    return generator_record_pickle({**{k: v for k, v in TINY.items() if k != "mapping_kwargs"},
                                    "mapping_kwargs": {"num_layers": 2, "extra": t}})


def module_dag(depth: int = 19) -> bytes:
    """A module tree in which every module holds the next one twice."""
    with persistence() as recon:
        sub: Any = Persistent(recon, "Leaf", {"_parameters": {}, "_modules": {}})
        for i in range(depth):
            sub = Persistent(recon, f"Level{i}", {"_parameters": {}, "_modules": {"a": sub, "b": sub}})
        rec = Persistent(recon, "Generator", {"_parameters": {}, "_modules": {"synthesis": sub},
                                               "_init_kwargs": dict(TINY)})
        return pickle.dumps({"G_ema": rec}, protocol=4)


# -- finding 4: declared sizes ------------------------------------------------------


def huge_kwargs_pickle(**change: Any) -> bytes:
    """A generator record with the tiny model's kwargs, changed (e.g. ``w_dim=300000``), and no tensors."""
    return generator_record_pickle({**TINY, **change})


def zero_stride_pickle(n: int = 300_000) -> bytes:
    """Tiny tensors for shape inference, except fc0/fc1 weights claiming ``[n, n]`` from one float each."""
    G = tiny_generator()
    state = dict(G.state_dict())
    fake = torch.zeros(1).expand(n, n)  # stride (0, 0): 4 bytes of storage claiming n^2 values
    state["mapping.fc1.weight"] = fake
    state["mapping.fc0.weight"] = torch.zeros(1).expand(n, G.z_dim)
    with persistence() as recon:
        mods: dict = {}
        rec = Persistent(recon, "Generator", {"_parameters": OrderedDict(state), "_modules": mods, "_init_kwargs": {}})
        return pickle.dumps({"G_ema": rec}, protocol=4)


class _TensorWithState:
    """Reduces to ``_rebuild_tensor_v2(storage, 0, (1,), (1,))`` followed by a BUILD that re-points it."""

    def __init__(self, n: int) -> None:
        self.storage = torch.zeros(1).storage()
        self.n = n

    def __reduce__(self):
        import torch._utils

        args = (self.storage, 0, (1,), (1,), False, OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args, (self.storage, 0, (self.n,), (1,)))


def build_on_tensor_pickle(n: int = 1_000_000) -> bytes:
    """A tensor whose BUILD state asks ``Tensor.__setstate__`` to grow it past its 4-byte storage."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pickle.dumps({"G_ema": {"t": _TensorWithState(n)}}, protocol=4)


class _BlobStorage:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self):
        import torch.storage

        return (torch.storage._load_from_bytes, (self.blob,))


def storage_blob(numel_claim: int, data: bytes = b"\0\0\0\0") -> bytes:
    """A legacy ``torch.save`` blob of a FloatStorage claiming ``numel_claim`` elements, holding ``data``."""
    f = io.BytesIO()
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for x in (0x1950A86A20F9469CFC6C, 1001, info):
        pickle.dump(x, f, protocol=2)
    marker = object()

    class _P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel_claim, None) if obj is marker else None

    _P(f, protocol=2).dump(marker)
    pickle.dump(["0"], f, protocol=2)
    f.write(struct.pack("<q", numel_claim) + data)
    return f.getvalue()


def storage_bomb_pickle(numel_claim: int = 10**11) -> bytes:
    return pickle.dumps({"G_ema": _BlobStorage(storage_blob(numel_claim))}, protocol=4)


def native_files(folder: Path, change: dict | None = None, name: str = "m") -> Path:
    """A valid native pair for the tiny generator, its JSON ``init_kwargs`` updated by ``change``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_native(tiny_generator(), folder / name)
    cfg_path = folder / f"{name}.json"
    cfg = json.loads(cfg_path.read_text())
    for key, value in (change or {}).items():
        if "." in key:
            outer, inner = key.split(".", 1)
            cfg["init_kwargs"].setdefault(outer, {})[inner] = value
        else:
            cfg["init_kwargs"][key] = value
    cfg_path.write_text(json.dumps(cfg))
    return folder / f"{name}.safetensors"


# -- finding 5: decompression bomb -----------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


_BOMB_CACHE: dict[int, bytes] = {}


def png_bomb(side: int = 13000) -> bytes:
    """A valid grey PNG of ``side`` x ``side`` zeros: well under 1 MB, ``side^2`` bytes decoded."""
    if side not in _BOMB_CACHE:
        comp = zlib.compressobj(9)
        row = b"\0" * (side + 1)  # filter byte + pixels
        parts = [comp.compress(row * 64) for _ in range(side // 64)]
        parts.append(comp.compress(row * (side % 64)))
        parts.append(comp.flush())
        ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        _BOMB_CACHE[side] = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
                             + _chunk(b"IEND", b""))
    return _BOMB_CACHE[side]


def png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def native_discriminator(folder: Path, change: dict | None = None, name: str = "m") -> Path:
    """A valid ``NAME.disc.*`` pair beside a tiny generator, its ``init_kwargs`` updated by ``change``."""
    from dragkit.formats.native import save_discriminator
    from dragkit.nets.discriminator import Discriminator

    stem = native_files(folder, None, name).with_suffix("")
    torch.manual_seed(0)
    save_discriminator(Discriminator(16, channel_base=128, channel_max=16), stem)
    cfg_path = folder / f"{name}.disc.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["init_kwargs"].update(change or {})
    cfg_path.write_text(json.dumps(cfg))
    return stem.with_suffix(".safetensors")


def discriminator_pickle(**init_kwargs: Any) -> bytes:
    """``{'G_ema': tiny generator, 'D': a Discriminator record with these kwargs and no tensors}``."""
    G = tiny_generator()
    with persistence() as recon:
        snap = {"G_ema": record(recon, G, "Generator", G.init_kwargs),
                "D": Persistent(recon, "Discriminator", {"_parameters": {}, "_modules": {}, "_init_args": (),
                                                          "_init_kwargs": init_kwargs})}
        return pickle.dumps(snap, protocol=4)


# -- issue 13: TensorFlow-era pickles and StyleGAN3 snapshots ----------------------------


@contextlib.contextmanager
def tf_network_class() -> Iterator[Any]:
    """A stand-in ``dnnlib.tflib.network.Network`` to pickle against: its state dict, as NVIDIA's pickles it."""

    class Network:
        def __init__(self, state: dict) -> None:
            self._state = state

        def __getstate__(self) -> dict:
            return self._state

        def __setstate__(self, state: dict) -> None:  # pragma: no cover - NVIDIA's execs build_module_src here
            raise AssertionError("dragkit called the file's Network.__setstate__")

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods = {k: types.ModuleType(k) for k in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    mods["dnnlib.tflib.network"].Network = Network
    with _registered(mods):
        yield Network


def _hwio(w: torch.Tensor, flip: bool = False) -> np.ndarray:
    x = w.detach().permute(2, 3, 1, 0).numpy()
    return np.ascontiguousarray(x[::-1, ::-1] if flip else x)


def tf_layout(G: Generator | None = None) -> dict:
    """The tiny generator as a TensorFlow-era ``Gs`` state (NVIDIA's TF variable names and layouts)."""
    G = G if G is not None else tiny_generator()
    sd = {k: v.detach() for k, v in G.state_dict().items()}
    syn = G.init_kwargs["synthesis_kwargs"]
    static = dict(latent_size=G.z_dim, label_size=0, dlatent_size=G.w_dim, resolution=G.img_resolution,
                  num_channels=G.img_channels, fmap_base=syn["channel_base"] // 2, fmap_max=syn["channel_max"],
                  mapping_layers=G.mapping.num_layers, mapping_lrmul=0.01)
    mapping = []
    for i in range(G.mapping.num_layers):
        mapping += [(f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].t().numpy().copy()),
                    (f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"].numpy())]
    synthesis = [("4x4/Const/const", sd["synthesis.b4.const"][None].numpy())]
    noise = 0
    for r in G.synthesis.block_resolutions:
        for layer, scope in ([("conv1", "Conv")] if r == 4 else [("conv0", "Conv0_up"), ("conv1", "Conv1")]):
            p = f"synthesis.b{r}.{layer}"
            synthesis += [(f"{r}x{r}/{scope}/weight", _hwio(sd[f"{p}.weight"], flip=layer == "conv0")),
                          (f"{r}x{r}/{scope}/mod_weight", sd[f"{p}.affine.weight"].t().numpy().copy()),
                          (f"{r}x{r}/{scope}/mod_bias", (sd[f"{p}.affine.bias"] - 1).numpy()),
                          (f"{r}x{r}/{scope}/noise_strength", sd[f"{p}.noise_strength"].numpy()),
                          (f"{r}x{r}/{scope}/bias", sd[f"{p}.bias"].numpy()),
                          (f"noise{noise}", sd[f"{p}.noise_const"][None, None].numpy())]
            noise += 1
        p = f"synthesis.b{r}.torgb"
        synthesis += [(f"{r}x{r}/ToRGB/weight", _hwio(sd[f"{p}.weight"])),
                      (f"{r}x{r}/ToRGB/mod_weight", sd[f"{p}.affine.weight"].t().numpy().copy()),
                      (f"{r}x{r}/ToRGB/mod_bias", (sd[f"{p}.affine.bias"] - 1).numpy()),
                      (f"{r}x{r}/ToRGB/bias", sd[f"{p}.bias"].numpy())]

    def net(name: str, func: str, variables: list, components: dict | None = None) -> dict:
        return {"version": 4, "name": name, "static_kwargs": dict(static), "components": components or {},
                "build_module_src": "raise SystemExit('build_module_src ran')\n", "build_func_name": func,
                "variables": variables}

    return net("Gs", "G_main", [("lod", np.zeros((), np.float32)), ("dlatent_avg", sd["mapping.w_avg"].numpy())],
               {"mapping": net("G_mapping", "G_mapping", mapping),
                "synthesis": net("G_synthesis", "G_synthesis_stylegan2", synthesis)})


def tf_pickle(state: dict | None = None, extra: Any = None) -> bytes:
    """``(G, D, Gs)`` of stand-in Networks for a TF-layout state (default: the tiny generator's)."""
    state = state if state is not None else tf_layout()
    with tf_network_class() as Network:
        def wrap(st: Any) -> Any:
            if not isinstance(st, dict) or "variables" not in st:
                return st
            st = dict(st)
            st["components"] = {k: wrap(v) for k, v in st.get("components", {}).items()}
            return Network(st)

        g = wrap(state)
        return pickle.dumps((g, g, g) if extra is None else (g, extra, g), protocol=3)


def tf_changed(change: Any) -> bytes:
    """The tiny TF pickle with ``change(state)`` applied to its ``Gs`` state."""
    state = tf_layout()
    change(state)
    return tf_pickle(state)


def tf_nesting(depth: int = 12) -> bytes:
    """A Network whose components nest ``depth`` deep."""
    state = tf_layout()
    inner = state
    for _ in range(depth):
        inner["components"] = {"mapping": dict(inner["components"]["mapping"]), "synthesis": dict(inner)}
        inner = inner["components"]["synthesis"]
    return tf_pickle(state)


def stylegan3_record_pickle(**change: Any) -> bytes:
    """A StyleGAN3 generator record (one real tensor name so it is recognised) with these kwargs and no network."""
    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2},
                  channel_base=256, channel_max=16, num_layers=4)
    kwargs.update(change)
    return generator_record_pickle(kwargs, {"synthesis.input.affine.weight": torch.zeros(4, 8)})


def tiny_stylegan3(seed: int = 0):
    from dragkit.nets import StyleGAN3Generator

    torch.manual_seed(seed)
    return StyleGAN3Generator(8, 0, 8, 16, 3, channel_base=256, channel_max=16, num_layers=4).eval()


def stylegan3_pickle(G: Any = None, init_kwargs: dict | None = None) -> bytes:
    """A valid StyleGAN3 snapshot ``{'G_ema': ...}`` (flat synthesis kwargs, as NVIDIA's train.py records them)."""
    G = G if G is not None else tiny_stylegan3()
    ik = G.init_kwargs
    kwargs = {k: ik[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")}
    kwargs.update(ik["synthesis_kwargs"])
    return nvidia_pickle(G, kwargs if init_kwargs is None else init_kwargs)


class Exec:
    """Reduces to ``builtins.exec(code)``: a global the unpickler must refuse before calling it."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _all_static(state: dict, **values: Any) -> None:
    for s in (state, state["components"]["mapping"], state["components"]["synthesis"]):
        s["static_kwargs"].update(values)


def tf_big() -> bytes:
    return tf_changed(lambda s: _all_static(s, resolution=4096, fmap_base=2**22, fmap_max=8192, dlatent_size=8192,
                                            latent_size=8192))


def tf_shared_list(depth: int = 10, ways: int = 4) -> bytes:
    """A static kwarg holding one list ``ways^depth`` ways (a few hundred bytes)."""
    t: Any = [0]
    for _ in range(depth):
        t = [t] * ways
    return tf_changed(lambda s: s["static_kwargs"].update(truncation_psi=t))


def tf_source_writing(path: Path) -> bytes:
    """A valid TF pickle whose ``build_module_src`` (never to be run) would write ``path``."""
    state = tf_layout()
    src = f"# build_module_src\nopen({str(path)!r}, 'w').write('module_src ran')\n"
    for s in (state, state["components"]["mapping"], state["components"]["synthesis"]):
        s["build_module_src"] = src
    return tf_pickle(state)
