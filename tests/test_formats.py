"""Checkpoint formats: NVIDIA pickles (safely), rosinality .pt, native safetensors.

NVIDIA-layout pickles are built here, in the test: a stand-in
``torch_utils.persistence`` module (registered in ``sys.modules`` for the
test only) whose objects reduce exactly as NVIDIA's persistent classes do -
``(_reconstruct_persistent_obj, (meta,))`` with ``meta = dict(type='class',
version=6, module_src=..., class_name=..., state=__dict__)`` and nested
persistent submodules.  The embedded ``module_src`` writes a sentinel file
when executed, so a loader that ran it would be caught.
"""
from __future__ import annotations

import argparse
import copy
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from dragkit.errors import CheckpointError
from dragkit.formats import load_checkpoint, load_native, save_native
from dragkit.formats.nvidia_pkl import infer_init_kwargs, load_nvidia_pkl
from dragkit.formats.rosinality import load_rosinality
from dragkit.nets import Generator

TINY = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3)
TINY_SYN = dict(channel_base=128, channel_max=16)  # 16, 16, 16, 8 channels at 4..16 px


def make_generator(seed: int = 0, c_dim: int = 0, num_layers: int = 2, **syn) -> Generator:
    """A tiny generator whose zero-initialised tensors get random values too."""
    torch.manual_seed(seed)
    G = Generator(c_dim=c_dim, **TINY, mapping_kwargs={"num_layers": num_layers}, synthesis_kwargs={**TINY_SYN, **syn})
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith("bias") and ".affine." not in name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        G.mapping.w_avg.copy_(torch.randn(G.w_dim, generator=gen))
    return G.eval().requires_grad_(False)


def render(G: Generator, seed: int = 3, psi: float = 0.7) -> torch.Tensor:
    z = G.z_from_seed(seed)
    c = torch.zeros([1, G.c_dim]) if G.c_dim else None
    if c is not None:
        c[0, 1] = 1
    with torch.no_grad():
        return G(z, c, truncation_psi=psi, noise_mode="const")


# --------------------------------------------------------------------------
# NVIDIA pickle layout, built in the test


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


@pytest.fixture
def nvidia_modules(monkeypatch, tmp_path):
    """Register stand-in ``torch_utils.persistence`` and ``dnnlib`` modules."""
    handle = StandIn(tmp_path / "SENTINEL_module_src")

    def _reconstruct_persistent_obj(meta):  # what NVIDIA's does: exec module_src
        handle.reconstruct_calls += 1
        ns: dict = {}
        exec(meta["module_src"], ns)  # noqa: S102 - the hazard under test
        return ns

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    torch_utils = types.ModuleType("torch_utils")
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils.persistence = persistence

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    dnnlib = types.ModuleType("dnnlib")
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    dnnlib.util = util
    for name, mod in [("torch_utils", torch_utils), ("torch_utils.persistence", persistence), ("dnnlib", dnnlib), ("dnnlib.util", util)]:
        monkeypatch.setitem(sys.modules, name, mod)
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
    D = torch.nn.Module()
    D.fc = torch.nn.Module()
    D.fc.weight = torch.nn.Parameter(torch.randn(4, 4))
    augment = torch.nn.Module()
    augment.register_buffer("p", torch.zeros([]))
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


@pytest.mark.parametrize(
    "layout,c_dim,arch",
    [("ada", 0, "skip"), ("sg3", 0, "skip"), ("ada", 4, "skip"), ("ada", 0, "orig"), ("sg3", 0, "resnet")],
)
def test_nvidia_pickle_renders_like_its_source(nvidia_modules, tmp_path, layout, c_dim, arch):
    G = make_generator(c_dim=c_dim, architecture=arch, conv_clamp=256)
    path = write_pickle(tmp_path / "network-snapshot-000100.pkl", nvidia_snapshot(nvidia_modules, G, layout))
    G2 = load_checkpoint(path)
    assert isinstance(G2, Generator) and G2.c_dim == c_dim and G2.img_resolution == 16
    assert G2.init_kwargs["synthesis_kwargs"]["architecture"] == arch
    assert G2.init_kwargs["synthesis_kwargs"]["conv_clamp"] == 256
    assert torch.equal(render(G2), render(G))
    assert not nvidia_modules.sentinel.exists() and nvidia_modules.reconstruct_calls == 0


def test_stand_in_would_execute_module_src_under_plain_pickle(nvidia_modules, tmp_path):
    """Control: the sentinel mechanism works, so the tests above can fail."""
    data = pickle.dumps(nvidia_snapshot(nvidia_modules, make_generator()))
    pickle.loads(data)  # what NVIDIA's own loader does
    assert nvidia_modules.sentinel.exists()


def test_nvidia_pickle_falls_back_to_G_and_infers_shapes(nvidia_modules, tmp_path):
    G = make_generator(architecture="resnet")
    snap = nvidia_snapshot(nvidia_modules, G)
    del snap["G_ema"]
    snap["G"].state["_init_kwargs"] = {}  # no recorded architecture: infer it from shapes
    path = write_pickle(tmp_path / "nokwargs.pkl", snap)
    G2 = load_checkpoint(path)
    assert G2.dragkit_metadata["architecture_from"] == "shapes"
    assert G2.init_kwargs["synthesis_kwargs"]["architecture"] == "resnet"
    assert torch.equal(render(G2), render(G))


def test_recorded_layer_attributes_beat_missing_kwargs(nvidia_modules, tmp_path):
    """stylegan3's SynthesisBlock defaults conv_clamp to 256 and _init_kwargs omit defaults:
    the value the layers recorded is what the network used."""
    G = make_generator(conv_clamp=0.5)  # small enough to clamp, so a wrong value shows
    ik = {k: G.init_kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")}
    ik.update(channel_base=TINY_SYN["channel_base"], channel_max=TINY_SYN["channel_max"])  # flat, no conv_clamp
    path = write_pickle(tmp_path / "sg3.pkl", nvidia_snapshot(nvidia_modules, G, init_kwargs=ik))
    G2 = load_checkpoint(path)
    assert G2.init_kwargs["synthesis_kwargs"]["conv_clamp"] == 0.5
    assert torch.equal(render(G2), render(G))
    G.synthesis.b4.conv1.conv_clamp = None
    assert not torch.equal(render(G2), render(G))  # the clamp matters in this test


def test_nvidia_pickle_kwargs_disagreeing_with_tensors_names_the_tensor(nvidia_modules, tmp_path):
    G = make_generator()
    ik = dict(G.init_kwargs, synthesis_kwargs=dict(G.init_kwargs["synthesis_kwargs"], channel_max=32))
    path = write_pickle(tmp_path / "mismatch.pkl", nvidia_snapshot(nvidia_modules, G, init_kwargs=ik))
    with pytest.raises(CheckpointError, match=r"tensor 'synthesis\.b4\.[\w.]+' has shape"):
        load_checkpoint(path)


def test_nvidia_pickle_with_missing_tensor_names_it(nvidia_modules, tmp_path):
    G = make_generator()
    snap = nvidia_snapshot(nvidia_modules, G)
    conv = snap["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b8"].state["_modules"]["conv0"]
    del conv.state["_parameters"]["weight"]
    path = write_pickle(tmp_path / "missing.pkl", snap)
    with pytest.raises(CheckpointError, match=r"missing tensor 'synthesis\.b8\.conv0\.weight'"):
        load_checkpoint(path)


def test_nvidia_pickle_without_generator(nvidia_modules, tmp_path):
    path = write_pickle(tmp_path / "nog.pkl", {"D": 1, "training_set_kwargs": {}})
    with pytest.raises(CheckpointError, match="no generator"):
        load_checkpoint(path)


# -- hostile and broken pickles ----------------------------------------------


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def hostile_payloads(sentinel: Path) -> dict[str, bytes]:
    """Hand-made pickles (protocol 0 opcodes) that would create ``sentinel``."""
    s = str(sentinel)
    cmd = f"touch {s}".encode()
    code = f"open({s!r}, 'w').write('x')".encode()
    return {
        "os.system": b"(dp0\nS'G_ema'\n" + _global("os", "system") + b"(S'" + cmd + b"'\ntRs.",
        "builtins.eval": _global("builtins", "eval") + b"(S\"" + code + b"\"\ntR.",
        "subprocess.Popen": _global("subprocess", "Popen") + b"((S'touch'\nS'" + s.encode() + b"'\nltR.",
        "builtins.exec (nested in a dict)": b"(dp0\nS'a'\n(lp1\n" + _global("builtins", "exec") + b"(S\"" + code + b"\"\ntRas.",
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "builtins.exec (nested in a dict)"])
def test_hostile_globals_are_refused_and_run_nothing(tmp_path, name):
    sentinel = tmp_path / "SENTINEL"
    data = hostile_payloads(sentinel)[name]
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=rf"refusing to load global '{name.split()[0]}'"):
        load_nvidia_pkl(path)
    assert not sentinel.exists()


def test_hostile_payload_control_really_runs_under_plain_pickle(tmp_path):
    """Control: the payload is live, so the refusal above is what saves us."""
    sentinel = tmp_path / "SENTINEL"
    pickle.loads(hostile_payloads(sentinel)["builtins.eval"])
    assert sentinel.exists()


class _Boom:
    """Pickles as a call to ``builtins.exec`` that would create a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({str(self.path)!r}, 'w').write('x')",))


def test_object_dtype_numpy_array_is_refused(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = 1, _Boom(sentinel)
    path = tmp_path / "objarr.pkl"
    path.write_bytes(pickle.dumps({"G_ema": arr}, protocol=2))
    with pytest.raises(CheckpointError, match="dtype"):
        load_nvidia_pkl(path)
    assert not sentinel.exists()


def test_numeric_numpy_values_are_allowed(nvidia_modules, tmp_path):
    G = make_generator()
    snap = nvidia_snapshot(nvidia_modules, G)
    snap["extra"] = {"arr": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float16(2), "big": np.int64(7)}
    path = write_pickle(tmp_path / "np.pkl", snap)
    assert torch.equal(render(load_checkpoint(path)), render(G))


@pytest.mark.parametrize("kind", ["truncated", "garbage", "zero"])
def test_broken_pickles_give_one_clear_error(nvidia_modules, tmp_path, kind):
    data = pickle.dumps(nvidia_snapshot(nvidia_modules, make_generator()))
    path = tmp_path / "broken.pkl"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(np.random.RandomState(0).bytes(4096))
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg


def test_tensorflow_network_without_its_state_is_refused(tmp_path):
    """``Network()`` called with no BUILD after it: a TF network with nothing recorded (tests/test_formats_models.py has real ones)."""
    path = tmp_path / "tf.pkl"
    path.write_bytes(b"(dp0\nS'G'\n" + _global("dnnlib.tflib.network", "Network") + b")Rs.")
    with pytest.raises(CheckpointError, match="malformed TensorFlow network"):
        load_checkpoint(path)


# --------------------------------------------------------------------------
# rosinality


def to_rosinality(G: Generator) -> dict[str, torch.Tensor]:
    """Our generator in rosinality's names and shapes (written from rosinality's model.py)."""
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    n = G.mapping.num_layers
    for i in range(n):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    blur = torch.tensor([1.0, 3, 3, 1])
    blur = torch.outer(blur, blur) / 64 * 4  # make_kernel(k) * upsample_factor**2

    def styled(dst: str, src: str, noise: str, up: bool) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[noise] = sd[f"{src}.noise_const"][None, None]
        if up:
            out[f"{dst}.conv.blur.kernel"] = blur.clone()

    def rgb(dst: str, src: str, up: bool) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            out[f"{dst}.upsample.kernel"] = blur.clone()

    out["input.input"] = sd["synthesis.b4.const"].unsqueeze(0)
    styled("conv1", "synthesis.b4.conv1", "noises.noise_0", False)
    rgb("to_rgb1", "synthesis.b4.torgb", False)
    for k, res in enumerate(G.synthesis.block_resolutions[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", f"noises.noise_{2 * k + 1}", True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", f"noises.noise_{2 * k + 2}", False)
        rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", True)
    return out


def test_rosinality_round_trip_renders_identically(tmp_path):
    G = make_generator(num_layers=3)
    sd = to_rosinality(G)
    assert sd["convs.0.conv.weight"].shape == (1, 16, 16, 3, 3) and sd["noises.noise_4"].shape == (1, 1, 16, 16)
    path = tmp_path / "550000.pt"
    args = argparse.Namespace(size=16, n_mlp=3, channel_multiplier=2)  # rosinality's train.py stores its args
    torch.save({"g_ema": sd, "latent_avg": G.mapping.w_avg.clone(), "args": args}, path)
    G2 = load_checkpoint(path)
    assert G2.mapping.num_layers == 3 and G2.init_kwargs["synthesis_kwargs"]["conv_clamp"] is None
    assert torch.equal(render(G2), render(G))


def test_rosinality_without_latent_avg_estimates_it(tmp_path):
    G = make_generator()
    path = tmp_path / "g.pt"
    torch.save({"g_ema": to_rosinality(G)}, path)
    G2 = load_rosinality(path)
    with torch.no_grad():
        w = G.mapping(torch.randn(4096, 16, generator=torch.Generator().manual_seed(0)), None)[:, 0].mean(0)
    assert torch.allclose(G2.mapping.w_avg, w, atol=1e-5)
    assert torch.equal(render(G2, psi=1.0), render(G, psi=1.0))


@pytest.mark.parametrize(
    "edit,pattern",
    [
        (lambda sd: sd.pop("convs.3.conv.weight"), r"missing tensor 'convs\.3\.conv\.weight'"),
        (lambda sd: sd.__setitem__("to_rgbs.1.bias", torch.zeros(1, 4, 1, 1)), r"tensor 'to_rgbs\.1\.bias' has shape \[1, 4, 1, 1\]"),
        (lambda sd: sd.__setitem__("convs.2.conv.modulation.weight", torch.zeros(7, 16)), r"'convs\.2\.conv\.modulation\.weight' has shape"),
        (lambda sd: sd.__setitem__("extra.weight", torch.zeros(1)), r"unexpected tensor 'extra\.weight'"),
        (lambda sd: sd.pop("noises.noise_2"), r"missing tensor 'noises\.noise_2'"),
    ],
)
def test_rosinality_is_strict(tmp_path, edit, pattern):
    sd = to_rosinality(make_generator())
    edit(sd)
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(16)}, path)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path)


def test_rosinality_hostile_pt_is_refused(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Boom(sentinel)}, path)
    with pytest.raises(CheckpointError, match="refusing to load global"):
        load_checkpoint(path)
    assert not sentinel.exists()


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_rosinality_broken_files(tmp_path, kind):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": to_rosinality(make_generator())}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if kind == "truncated" else b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(path)


# --------------------------------------------------------------------------
# native and shape inference


def test_native_round_trip_is_exact_and_fp16_close(tmp_path):
    G = make_generator(c_dim=0, architecture="resnet")
    save_native(G, tmp_path / "m")
    assert (tmp_path / "m.safetensors").is_file() and (tmp_path / "m.json").is_file()
    assert torch.equal(render(load_native(tmp_path / "m")), render(G))
    save_native(G, tmp_path / "h.safetensors", dtype=torch.float16)
    assert (tmp_path / "h.safetensors").stat().st_size < (tmp_path / "m.safetensors").stat().st_size * 0.6
    G16 = load_checkpoint(tmp_path / "h.safetensors")
    assert next(G16.parameters()).dtype == torch.float32
    diff = (render(G16) - render(G)).abs().max().item()
    assert 0 < diff < 0.05


@pytest.mark.parametrize("arch", ["skip", "orig", "resnet"])
def test_infer_init_kwargs_rebuilds_the_same_network(arch):
    G = make_generator(c_dim=3, num_layers=4, architecture=arch)
    kw = infer_init_kwargs(G.state_dict())
    G2 = Generator(**kw)
    assert set(G2.state_dict()) == set(G.state_dict())
    assert all(G2.state_dict()[k].shape == v.shape for k, v in G.state_dict().items())
    assert kw["synthesis_kwargs"]["architecture"] == arch and kw["c_dim"] == 3


def test_infer_standard_channel_layouts():
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 1024, "channel_max": 32})
    shapes = {k: torch.empty(v.shape) for k, v in G.state_dict().items()}
    kw = infer_init_kwargs(shapes)["synthesis_kwargs"]
    assert (kw["channel_base"], kw["channel_max"]) == (1024, 32)


def test_pt_with_nvidia_named_state_dict(tmp_path):
    """``torch.save(G_ema.state_dict())`` files load too (architecture from shapes)."""
    G = make_generator(architecture="orig")
    torch.save(G.state_dict(), tmp_path / "g_ema_state.pt")
    torch.save({"G_ema": G.state_dict()}, tmp_path / "wrapped.pt")
    for name in ("g_ema_state.pt", "wrapped.pt"):
        G2 = load_checkpoint(tmp_path / name)
        assert torch.equal(render(G2), render(G))


class _EvilStorage:
    """A 'storage' whose inner torch.save blob is itself a hostile pickle."""

    def __init__(self, sentinel: Path) -> None:
        self.blob = pickle.dumps(_Boom(sentinel), protocol=2)

    def __reduce__(self):
        import torch.storage

        return (torch.storage._load_from_bytes, (self.blob,))


def test_hostile_storage_blob_is_refused(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "blob.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _EvilStorage(sentinel)}, protocol=4))
    with pytest.raises(CheckpointError, match="unreadable tensor storage"):
        load_checkpoint(path)
    assert not sentinel.exists()
