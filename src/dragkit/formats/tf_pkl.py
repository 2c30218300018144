"""TensorFlow-era StyleGAN2 networks -> dragkit's generator and discriminator (pure conversion).

NVIDIA's original ``stylegan2`` repository (configs a..f) and the
TensorFlow ``stylegan2-ada`` save ``(G, D, Gs)`` tuples of
``dnnlib.tflib.network.Network`` objects.  A ``Network``'s pickled state
(its ``__getstate__``) is a dict::

    version           4 (stylegan2) or 5 (stylegan2-ada)
    name              'G', 'D', 'Gs', 'G_mapping', 'G_synthesis'
    static_kwargs     the build function's keyword arguments
    components        {'mapping': state, 'synthesis': state} (sub-networks, same layout)
    build_module_src  TensorFlow source code - never executed, never read here
    build_func_name   'G_main', 'G_mapping', 'G_synthesis_stylegan2', 'D_stylegan2', ...
    variables         [(local name, numpy array), ...]

This module turns such a *recorded* state (plain dicts, lists and numpy
arrays; the unpickling is :mod:`dragkit.formats.nvidia_pkl`'s job) into the
init kwargs and NVIDIA-named state dict of :class:`dragkit.nets.Generator`
and :class:`dragkit.nets.discriminator.Discriminator`, with the mapping of
NVIDIA's own converter (``legacy.py`` of stylegan2-ada-pytorch / stylegan3):

    TF variable (prefix = component)          PyTorch tensor
    dlatent_avg                               mapping.w_avg
    mapping/Dense{i}/weight [in, out]         mapping.fc{i}.weight [out, in]   (transposed)
    mapping/Dense{i}/bias                     mapping.fc{i}.bias
    mapping/LabelEmbed/weight, bias           mapping.embed.weight (transposed), bias
    synthesis/4x4/Const/const [1, C, 4, 4]    synthesis.b4.const [C, 4, 4]
    synthesis/{r}x{r}/{layer}/weight HWIO     synthesis.b{r}.{conv}.weight OIHW (transpose 3, 2, 0, 1)
    .../Conv0_up/weight, .../Skip/weight      the same, spatially flipped first (TF's transposed conv)
    .../mod_weight [w_dim, C_in]              ...affine.weight [C_in, w_dim]  (transposed)
    .../mod_bias                              ...affine.bias + 1 (TF adds the 1 at run time)
    .../noise_strength, .../bias              the same
    synthesis/noise{j} [1, 1, r, r]           ...noise_const [r, r]; j = 0 for b4.conv1,
                                              2 log2(r) - 5 for b{r}.conv0, 2 log2(r) - 4 for b{r}.conv1
    synthesis/ToRGB_lod{k}/...                b{H / 2**k}.torgb (progressive nets, configs b-d)

with ``{layer}`` = ``Conv`` (b4), ``Conv0_up``/``Conv1`` (b8 and up),
``ToRGB``, ``Skip`` -> ``conv1``, ``conv0``/``conv1``, ``torgb``, ``skip``;
``channel_base = 2 * fmap_base`` (TF's ``nf(stage) = fmap_base / 2**stage``).
Unlike ``legacy.py``, the conversion is strict: every variable must be
used or be one of the known unused ones (``lod``, the lower-resolution
``ToRGB_lod`` layers of a fully grown progressive network), every tensor
must have the shape the kwargs imply, and every static kwarg must be known;
anything else is a :class:`~dragkit.errors.CheckpointError` naming it.

Supported: generators of configs b..f and their config-e variants
(``orig``/``skip``/``resnet``), stylegan2-ada TF generators (incl.
conditional ones: ``LabelEmbed``); discriminators with the resnet
architecture and no labels (config-e ``Dresnet``, config-f, ada TF
defaults).  Refused, with the reason: config a (StyleGAN 1 networks,
``G_style``), a progressive network caught mid-growth (``lod != 0``: its
image blends two resolutions), original-stylegan2 conditional generators
(``LabelConcat``: labels are concatenated before the normalisation, which
NVIDIA's PyTorch mapping network cannot express), discriminators of
configs b-d (``D_stylegan``), ``orig``/``skip`` or conditional
discriminators, spectral normalisation, non-``lrelu`` activations,
``fmap_decay != 1``, ``fmap_min != 1``, ``fmap_const`` other than the
first block's width, ``normalize_latents=False``.
"""
# Why this module is long (~680 lines): the TF-to-PyTorch name and layout rules for G and D are
# one table of conversions; they are kept together so that each rule is written once.
from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import torch

from ..errors import CheckpointError
from ..nets.ops import setup_filter

__all__ = [
    "TFConversion",
    "tf_network_state",
    "tf_generator_kwargs",
    "collect_tf_variables",
    "convert_tf_generator",
    "convert_tf_discriminator",
]

_MAX_DEPTH = 8
_VERSIONS = (4, 5)
_G_BUILD = "G_main"
_G_MAPPING = ("G_mapping",)
_G_SYNTHESIS = ("G_synthesis_stylegan2", "G_synthesis", "G_synthesis_stylegan_revised")
_REVISED = "G_synthesis_stylegan_revised"
_D_BUILD = {"D_stylegan2": 4, "D_main": None}  # build function -> its default mbstd_group_size

# Static kwargs that only affect training or TF's graph building, never an inference image.
_G_IGNORED = {
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
    "style_mixing_prob", "dlatent_avg_beta", "structure", "conditioning", "fused_modconv",
    "randomize_noise", "is_template_graph", "force_clean_graph", "dtype", "is_training",
    "is_validation", "return_dlatents",
}
_D_IGNORED = {
    "structure", "conditioning", "dtype", "is_template_graph", "augment_strength", "use_pagan",
    "pagan_num", "pagan_fade", "adaptive_dropout", "freeze_layers", "mapping_layers", "mapping_fmaps",
    "mapping_lrmul",
}


class TFConversion(NamedTuple):
    """The result of a conversion: constructor arguments and NVIDIA-named tensors."""

    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


# --------------------------------------------------------------------------
# The recorded state.


#: Most values in one recorded network state tree (a 1024 px config-f ``Gs`` has about 1,000).
_MAX_STATE_NODES = 200_000
_MAX_TEXT = 100_000


def tf_network_state(rec: Any, source: str = "<pickle>") -> dict[str, Any]:
    """An unpickled ``dnnlib.tflib.network.Network`` stand-in -> its state as a plain dict tree.

    ``rec`` is a :class:`~dragkit.formats.safe_pickle.TFNetworkRecord`;
    its ``components`` (themselves records) become nested state dicts.
    Only data may appear anywhere in the state: text, numbers, booleans,
    None, numeric NumPy arrays and scalars, lists, tuples and dicts with
    text keys (``build_module_src`` was dropped when the record was made).
    Anything else - a callable, a torch object, a PyTorch network record,
    a network anywhere but in ``components`` - is refused.  Depth and size
    are bounded, shared values are copied within a node budget.

    Raises:
        CheckpointError: not a network record, or a state that is not plain data.
    """
    from .safe_pickle import TFNetworkRecord

    budget = [0]

    def data(v: Any, where: str, depth: int) -> Any:
        budget[0] += 1
        if budget[0] > _MAX_STATE_NODES:
            raise CheckpointError(f"{source}: the TensorFlow network state is too large (over {_MAX_STATE_NODES:,} values)")
        if depth > 4 * _MAX_DEPTH:
            raise CheckpointError(f"{source}: the TensorFlow network state nests too deeply ({where[:60]}...)")
        if v is None or isinstance(v, (bool, int, float, np.generic, np.ndarray)):
            if isinstance(v, np.ndarray) and v.dtype.kind not in "biufc":  # pragma: no cover - the unpickler refuses these
                raise CheckpointError(f"{source}: {where} is a non-numeric array")
            return v
        if isinstance(v, str):
            if len(v) > _MAX_TEXT:
                raise CheckpointError(f"{source}: {where} is a text of {len(v):,} characters")
            return v
        if isinstance(v, (list, tuple)):
            out = [data(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
            return out if isinstance(v, list) else tuple(out)
        if isinstance(v, dict):
            out_d = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise CheckpointError(f"{source}: {where} has a key of type {type(k).__name__}")
                out_d[k] = data(x, f"{where}.{k}", depth + 1)
            return out_d
        what = "a TensorFlow network" if isinstance(v, TFNetworkRecord) else \
            ("a callable" if callable(v) else f"a {type(v).__name__}")
        raise CheckpointError(f"{source}: {where} holds {what}; a TensorFlow network state may hold only data")

    def network(r: Any, where: str, depth: int) -> dict[str, Any]:
        if not isinstance(r, TFNetworkRecord):
            raise CheckpointError(f"{source}: {where} is not a TensorFlow network (got {type(r).__name__})")
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"{source}: network components nest too deeply")
        if not isinstance(r.state, dict):
            raise CheckpointError(f"{source}: {where} has no recorded state")
        out: dict[str, Any] = {}
        for k, v in r.state.items():
            if k == "components":
                if not isinstance(v, dict):
                    raise CheckpointError(f"{source}: {where}.components is not a dict")
                comps = {}
                for name, comp in v.items():
                    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                        raise CheckpointError(f"{source}: malformed component name {name!r:.40} in {where}")
                    comps[name] = network(comp, f"{where}.{name}", depth + 1)
                out[k] = comps
            else:
                out[k] = data(v, f"{where}.{k}", 0)
        return out

    name = rec.state.get("name") if isinstance(rec, TFNetworkRecord) and isinstance(rec.state, dict) else None
    return network(rec, name if isinstance(name, str) and name.isidentifier() else "network", 0)


def _check_state(state: Any, where: str, source: str) -> Mapping[str, Any]:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: {where} is not a TensorFlow network state (got {type(state).__name__})")
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{source}: {where} has no network version")
    if version not in _VERSIONS:
        raise CheckpointError(f"{source}: {where} is a TensorFlow network of version {version}; "
                              f"supported: {', '.join(map(str, _VERSIONS))} (StyleGAN2 and StyleGAN2-ADA)")
    if not isinstance(state.get("static_kwargs", {}), Mapping):
        raise CheckpointError(f"{source}: {where}.static_kwargs is not a dict")
    return state


def _func_name(state: Mapping[str, Any]) -> str | None:
    name = state.get("build_func_name")
    return name.rsplit(".", 1)[-1] if isinstance(name, str) else None


def collect_tf_variables(state: Mapping[str, Any], source: str = "<pickle>") -> dict[str, np.ndarray]:
    """All variables of a recorded network and its components, ``'component/local/name' -> array``.

    Component variables are prefixed with the component's key in
    ``components`` (``mapping/Dense0/weight``), as NVIDIA's converter does.

    Raises:
        CheckpointError: a malformed entry, a name given twice, or an array
            that is not real floating point.
    """
    out: dict[str, np.ndarray] = {}

    def visit(st: Any, prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"{source}: network components nest too deeply")
        st = _check_state(st, prefix.rstrip("/") or "network", source)
        variables = st.get("variables", [])
        if not isinstance(variables, (list, tuple)):
            raise CheckpointError(f"{source}: variables of {prefix.rstrip('/') or 'network'} are not a list")
        for entry in variables:
            if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str):
                raise CheckpointError(f"{source}: malformed variable entry in {prefix.rstrip('/') or 'network'}")
            name, value = prefix + entry[0], entry[1]
            if isinstance(value, (np.floating, float)) and not isinstance(value, bool):
                value = np.asarray(value)
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise CheckpointError(f"{source}: variable {name!r} is not a floating-point array")
            if name in out:
                raise CheckpointError(f"{source}: variable {name!r} appears twice")
            out[name] = value
        components = st.get("components", {}) or {}
        if not isinstance(components, Mapping):
            raise CheckpointError(f"{source}: components of {prefix.rstrip('/') or 'network'} are not a dict")
        for key, comp in components.items():
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_]+", key):
                raise CheckpointError(f"{source}: malformed component name {key!r}")
            visit(comp, f"{prefix}{key}/", depth + 1)

    visit(state, "", 0)
    return out


# --------------------------------------------------------------------------
# Static kwargs.


class _Kwargs:
    """Reads static kwargs, remembering which were read; the rest are unknown."""

    def __init__(self, kwargs: Mapping[str, Any], ignored: set[str], source: str, what: str) -> None:
        self.kwargs = dict(kwargs)
        self.known = set(ignored)
        self.source = source
        self.what = what

    def get(self, name: str, default: Any = None) -> Any:
        self.known.add(name)
        value = self.kwargs.get(name, default)
        if isinstance(value, np.generic):
            value = value.item()
        return value

    def require(self, name: str, ok: Any, default: Any, why: str) -> Any:
        value = self.get(name, default)
        if not ok(value):
            raise CheckpointError(f"{self.source}: {self.what} has {name}={value!r}; {why}")
        return value

    def check_unknown(self) -> None:
        unknown = sorted(str(k) for k in self.kwargs if k not in self.known)
        if unknown:
            raise CheckpointError(f"{self.source}: {self.what} has unknown TensorFlow kwarg {unknown[0]!r}"
                                  + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))


def _int(value: Any, name: str, source: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)) or int(value) != value or value < minimum:
        raise CheckpointError(f"{source}: static kwarg {name}={value!r} is not an integer >= {minimum}")
    return int(value)


def _number_or_none(value: Any, name: str, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckpointError(f"{source}: static kwarg {name}={value!r} is not a number")
    return value


def _number(value: Any, name: str, source: str) -> float:
    out = _number_or_none(value, name, source)
    if out is None or out <= 0:
        raise CheckpointError(f"{source}: static kwarg {name}={value!r} is not a positive number")
    return out


def _kernel(value: Any, source: str) -> list[float]:
    if value is None:  # TF's box filter; NVIDIA's converter would make it the identity instead
        raise CheckpointError(f"{source}: resample_kernel=None (a box filter) is not supported")
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, (list, tuple, np.ndarray)) else None
    if arr is None or arr.ndim != 1 or arr.size < 1 or not np.isfinite(arr).all() or arr.sum() == 0:
        raise CheckpointError(f"{source}: resample_kernel={value!r} is not a 1-D FIR kernel")
    return [float(v) for v in arr]


# --------------------------------------------------------------------------
# Generator.


def _generator_kwargs(state: Mapping[str, Any], tf: Mapping[str, np.ndarray], source: str) -> tuple[dict[str, Any], bool]:
    """dragkit Generator kwargs from G's static kwargs (cross-checked with shapes); and whether it is progressive."""
    kw = _Kwargs(state.get("static_kwargs", {}), _G_IGNORED, source, "the generator")
    kw.require("mapping_func", lambda v: v in _G_MAPPING, "G_mapping", "only NVIDIA's G_mapping is supported")
    synthesis_func = kw.require("synthesis_func", lambda v: v in _G_SYNTHESIS, "G_synthesis_stylegan2",
                                f"supported synthesis networks: {', '.join(_G_SYNTHESIS)}")
    comp = state.get("components", {}) or {}
    synth_name = _func_name(comp.get("synthesis", {})) if isinstance(comp.get("synthesis"), Mapping) else None
    progressive = (synth_name or synthesis_func) == _REVISED
    kw.require("nonlinearity", lambda v: v == "lrelu", "lrelu", "only leaky ReLU networks are supported")
    kw.require("mapping_nonlinearity", lambda v: v == "lrelu", "lrelu", "only leaky ReLU mapping networks are supported")
    kw.require("fmap_decay", lambda v: v == 1, 1, "channel counts must halve with each doubling of resolution")
    kw.require("fmap_min", lambda v: v == 1, 1, "a channel floor other than 1 is not supported")
    kw.require("normalize_latents", lambda v: v is True, True, "z is always normalised in NVIDIA's PyTorch mapping")

    z_dim = _int(kw.get("latent_size", 512), "latent_size", source)
    c_dim = _int(kw.get("label_size", 0), "label_size", source)
    w_dim = _int(kw.get("dlatent_size", 512), "dlatent_size", source, 1)
    res = _int(kw.get("resolution", 1024), "resolution", source, 4)
    if 2 ** int(math.log2(res)) != res:
        raise CheckpointError(f"{source}: resolution {res} is not a power of two")
    img_channels = _int(kw.get("num_channels", 3), "num_channels", source, 1)
    fmap_base = _int(kw.get("fmap_base", 16384), "fmap_base", source, 1)
    fmap_max = _int(kw.get("fmap_max", 512), "fmap_max", source, 1)
    channel_base = 2 * fmap_base
    first = min(channel_base // 4, fmap_max)
    kw.require("fmap_const", lambda v: v is None or v == first, None,
               f"the constant input must have the first block's {first} channels")
    architecture = kw.require("architecture", lambda v: v in ("orig", "skip", "resnet"), "skip",
                              "architecture must be 'orig', 'skip' or 'resnet'")
    if progressive:
        architecture = "orig"  # at lod 0 the output is the last ToRGB alone
    use_noise = kw.get("use_noise", True)
    if not isinstance(use_noise, bool):
        raise CheckpointError(f"{source}: use_noise={use_noise!r} is not a bool")

    mapping_layers = _int(kw.get("mapping_layers", 8), "mapping_layers", source, 1)
    mapping_kwargs: dict[str, Any] = {
        "num_layers": mapping_layers,
        "lr_multiplier": _number(kw.get("mapping_lrmul", 0.01), "mapping_lrmul", source),
    }
    beta = _number_or_none(kw.get("w_avg_beta", 0.995), "w_avg_beta", source)
    mapping_kwargs["w_avg_beta"] = 1 if beta is None else beta  # as legacy.py: w_avg always exists
    # Hidden and label-embedding widths: the TF defaults differ between the
    # two code bases (512 vs dlatent_size; latent_size vs dlatent_size), so
    # the recorded value or, failing that, the variable's shape decides.
    fmaps = kw.get("mapping_fmaps", None)
    if fmaps is None and mapping_layers > 1 and "mapping/Dense0/weight" in tf:
        fmaps = int(tf["mapping/Dense0/weight"].shape[-1])
    if fmaps is not None and mapping_layers > 1:
        mapping_kwargs["layer_features"] = _int(fmaps, "mapping_fmaps", source, 1)
    if c_dim:
        if "mapping/LabelConcat/weight" in tf:
            raise CheckpointError(f"{source}: this conditional generator concatenates its labels before normalising "
                                  "(original stylegan2 'LabelConcat'), which NVIDIA's PyTorch mapping network cannot "
                                  "express; only stylegan2-ada label embeddings are supported")
        label_fmaps = kw.get("label_fmaps", None)
        if label_fmaps is None and "mapping/LabelEmbed/weight" in tf:
            label_fmaps = int(tf["mapping/LabelEmbed/weight"].shape[-1])
        if label_fmaps is not None:
            mapping_kwargs["embed_features"] = _int(label_fmaps, "label_fmaps", source, 1)

    conv_clamp = _number_or_none(kw.get("conv_clamp", None), "conv_clamp", source)
    synthesis_kwargs: dict[str, Any] = {
        "channel_base": channel_base,
        "channel_max": fmap_max,
        "num_fp16_res": _int(kw.get("num_fp16_res", 0), "num_fp16_res", source),
        "conv_clamp": conv_clamp,
        "architecture": architecture,
        "resample_filter": _kernel(kw.get("resample_kernel", [1, 3, 3, 1]), source),
        "use_noise": use_noise,
    }
    kw.check_unknown()
    return {
        "z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": res, "img_channels": img_channels,
        "mapping_kwargs": mapping_kwargs, "synthesis_kwargs": synthesis_kwargs,
    }, progressive


_HWIO = (3, 2, 0, 1)


def _g_rule(name: str) -> tuple[str, str] | None:
    """PyTorch tensor name -> (TF variable name, transform) for the generator."""
    if name == "mapping.w_avg":
        return "dlatent_avg", "copy"
    if m := re.fullmatch(r"mapping\.embed\.(weight|bias)", name):
        return f"mapping/LabelEmbed/{m[1]}", "t" if m[1] == "weight" else "copy"
    if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
        return f"mapping/Dense{m[1]}/{m[2]}", "t" if m[2] == "weight" else "copy"
    if name == "synthesis.b4.const":
        return "synthesis/4x4/Const/const", "first"
    m = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb|skip)\.(.+)", name)
    if not m:
        return None
    r, layer, leaf = int(m[1]), m[2], m[3]
    scope = {"conv0": "Conv0_up", "conv1": "Conv" if r == 4 else "Conv1", "torgb": "ToRGB", "skip": "Skip"}[layer]
    base = f"synthesis/{r}x{r}/{scope}"
    if leaf == "weight":
        return f"{base}/weight", "hwio_flip" if layer in ("conv0", "skip") else "hwio"
    if leaf == "bias" or leaf == "noise_strength":
        return f"{base}/{leaf}", "copy"
    if leaf == "affine.weight":
        return f"{base}/mod_weight", "t"
    if leaf == "affine.bias":
        return f"{base}/mod_bias", "plus1"
    if leaf == "noise_const":
        log2 = int(math.log2(r))
        j = 0 if r == 4 else 2 * log2 - (5 if layer == "conv0" else 4)
        return f"synthesis/noise{j}", "noise"
    return None


def _apply(value: np.ndarray, how: str) -> np.ndarray:
    if how == "copy":
        return value
    if how == "t":
        return value.transpose() if value.ndim == 2 else value
    if how == "first":
        return value[0] if value.ndim >= 1 and value.shape[0] == 1 else value
    if how == "hwio":
        return value.transpose(_HWIO) if value.ndim == 4 else value
    if how == "hwio_flip":
        return value[::-1, ::-1].transpose(_HWIO) if value.ndim == 4 else value
    if how == "plus1":
        return value + 1
    if how == "noise":
        return value[0, 0] if value.ndim == 4 and value.shape[:2] == (1, 1) else value
    raise AssertionError(how)


def _expected_state(factory: Any, kwargs: Mapping[str, Any], source: str, holds: int,
                    what: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a network's state dict (built once; its random values are discarded).

    The kwargs come from the file, so they are checked field by field and
    the construction may allocate no more than about the ``holds`` elements
    the file's variables hold (:mod:`.arch`).
    """
    from .arch import build_bounded, check_discriminator_kwargs, check_generator_kwargs

    check = check_generator_kwargs if what == "generator" else check_discriminator_kwargs
    checked = check(kwargs, source)
    with torch.no_grad():
        net = build_bounded(factory, checked, holds, source, what)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _held(tf: Mapping[str, np.ndarray]) -> int:
    return sum(int(v.size) for v in tf.values())


def _tensor(value: np.ndarray, name: str, tf_name: str, shape: tuple[int, ...], source: str) -> torch.Tensor:
    if tuple(value.shape) != shape:
        raise CheckpointError(f"{source}: TensorFlow variable {tf_name!r} gives {name} the shape "
                              f"{list(value.shape)}, the network expects {list(shape)}")
    t = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))  # (ascontiguousarray makes 0-d arrays 1-d)
    assert tuple(t.shape) == shape
    if not torch.isfinite(t).all():
        raise CheckpointError(f"{source}: TensorFlow variable {tf_name!r} is not finite")
    return t


def _generator_setup(state: Mapping[str, Any], source: str):
    """Checks of a TF generator state; returns (state, variables, kwargs, progressive)."""
    state = _check_state(state, "the generator", source)
    func = _func_name(state)
    if func == "G_style":
        raise CheckpointError(f"{source}: this is an original StyleGAN (config-a, G_style) generator; "
                              "only StyleGAN2 networks (configs b-f) are supported")
    if func is not None and func != _G_BUILD:
        raise CheckpointError(f"{source}: the generator's build function is {func!r}; expected {_G_BUILD!r}")
    comps = state.get("components", {}) or {}
    for key, allowed in (("mapping", _G_MAPPING), ("synthesis", _G_SYNTHESIS)):
        sub = comps.get(key) if isinstance(comps, Mapping) else None
        if sub is None:
            raise CheckpointError(f"{source}: the generator has no {key!r} component")
        name = _func_name(sub) if isinstance(sub, Mapping) else None
        if name is not None and name not in allowed:
            raise CheckpointError(f"{source}: the {key} network is {name!r}; supported: {', '.join(allowed)}")
    tf = collect_tf_variables(state, source)
    kwargs, progressive = _generator_kwargs(state, tf, source)
    return state, tf, kwargs, progressive


def tf_generator_kwargs(state: Mapping[str, Any], source: str = "<pickle>") -> dict[str, Any]:
    """The :class:`dragkit.nets.Generator` kwargs a recorded TF generator state converts to (nothing built).

    Raises:
        CheckpointError: as :func:`convert_tf_generator` for the network and its static kwargs.
    """
    return _generator_setup(state, source)[2]


def convert_tf_generator(state: Mapping[str, Any], source: str = "<pickle>") -> TFConversion:
    """A recorded TF ``G``/``Gs`` -> kwargs and state dict of :class:`dragkit.nets.Generator`.

    Args:
        state: the ``Network`` state (see the module docstring); its
            ``components`` hold the mapping and synthesis states.
        source: file name for error messages.

    Returns:
        ``TFConversion(init_kwargs, state_dict)``; ``Generator(**init_kwargs)``
        loads ``state_dict`` with ``strict=True`` and renders what NVIDIA's
        PyTorch port of the network renders.

    Raises:
        CheckpointError: an unsupported configuration (named, with the
            reason), an unknown static kwarg, or a missing, unexpected or
            mis-shaped variable (named).
    """
    from ..nets import Generator

    state, tf, kwargs, progressive = _generator_setup(state, source)
    res = kwargs["img_resolution"]
    unused_ok = {"lod", "synthesis/lod"}
    if progressive:
        for key in ("lod", "synthesis/lod"):
            if key in tf and float(np.asarray(tf[key]).reshape(-1)[0]) != 0:
                raise CheckpointError(f"{source}: this progressive network is mid-growth ({key} = "
                                      f"{float(np.asarray(tf[key]).reshape(-1)[0]):g}); its image blends two "
                                      "resolutions, which a fixed network cannot reproduce")
        tf = dict(tf)
        for name in list(tf):
            if m := re.fullmatch(r"synthesis/ToRGB_lod(\d+)/(.+)", name):
                if int(m[1]) == 0:
                    tf[f"synthesis/{res}x{res}/ToRGB/{m[2]}"] = tf.pop(name)
                else:
                    unused_ok.add(name)  # lower-resolution outputs, faded out at lod 0
    expected = _expected_state(Generator, kwargs, source, _held(tf), "generator")
    kernel = setup_filter(tuple(kwargs["synthesis_kwargs"]["resample_filter"]))
    out, used = _convert_variables(expected, tf, _g_rule, source, kernel)
    extra = sorted(set(tf) - used - unused_ok)
    if extra:
        raise CheckpointError(f"{source}: unexpected TensorFlow variable {extra[0]!r}"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                              + f" for a {kwargs['synthesis_kwargs']['architecture']} generator")
    return TFConversion(kwargs, out)


def _convert_variables(expected: Mapping[str, tuple[int, ...]], tf: Mapping[str, Any],
                       rule: Callable[[str], tuple[str, str] | None], source: str,
                       resample_filter: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Each expected PyTorch tensor from the TF variable ``rule(name)`` names, converted as it says and
    checked against its shape; ``resample_filter`` buffers are copies of ``resample_filter`` when given.

    Returns:
        ``(state dict, names of the TF variables used)``.

    Raises:
        CheckpointError: a missing or mis-shaped variable (named).
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, shape in expected.items():
        if resample_filter is not None and name.endswith("resample_filter"):
            out[name] = resample_filter.clone()
            continue
        found = rule(name)
        if found is None:  # pragma: no cover - every tensor of the networks has a rule
            raise CheckpointError(f"{source}: no TensorFlow variable maps to {name!r}")
        tf_name, how = found
        if tf_name not in tf:
            raise CheckpointError(f"{source}: missing TensorFlow variable {tf_name!r} (for {name})")
        used.add(tf_name)
        out[name] = _tensor(_apply(tf[tf_name], how), name, tf_name, shape, source)
    return out, used


# --------------------------------------------------------------------------
# Discriminator.


def _d_rule(name: str) -> tuple[str, str] | None:
    if m := re.fullmatch(r"b(\d+)\.(fromrgb|conv0|conv1|skip)\.(weight|bias)", name):
        r, layer, leaf = m[1], m[2], m[3]
        scope = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip"}[layer]
        return f"{r}x{r}/{scope}/{leaf}", "hwio" if leaf == "weight" else "copy"
    table = {
        "b4.conv.weight": ("4x4/Conv/weight", "hwio"), "b4.conv.bias": ("4x4/Conv/bias", "copy"),
        "b4.fc.weight": ("4x4/Dense0/weight", "t"), "b4.fc.bias": ("4x4/Dense0/bias", "copy"),
        "b4.out.weight": ("Output/weight", "t"), "b4.out.bias": ("Output/bias", "copy"),
    }
    return table.get(name)


def convert_tf_discriminator(state: Mapping[str, Any], source: str = "<pickle>") -> TFConversion:
    """A recorded TF ``D`` -> kwargs and state dict of :class:`dragkit.nets.discriminator.Discriminator`.

    The minibatch-std group size is the TF build function's (4 for the
    original ``D_stylegan2`` when not recorded); NVIDIA's ``legacy.py``
    uses None (the whole batch) instead, which gives the same logits for
    batches of up to 4 images.

    Raises:
        CheckpointError: an unsupported discriminator (configs b-d, ``orig``
            or ``skip``, conditional, spectral norm, a whole-batch
            minibatch-std group), an unknown kwarg, or a missing, unexpected
            or mis-shaped variable.
    """
    from ..nets.discriminator import Discriminator

    state = _check_state(state, "the discriminator", source)
    func = _func_name(state)
    if func in ("D_stylegan", "D_basic"):
        raise CheckpointError(f"{source}: this is a progressive-growing discriminator ({func}, configs a-d); "
                              "dragkit's discriminator is the StyleGAN2 resnet one (configs e-f)")
    if func is not None and func not in _D_BUILD:
        raise CheckpointError(f"{source}: the discriminator's build function is {func!r}; "
                              f"supported: {', '.join(_D_BUILD)}")
    kw = _Kwargs(state.get("static_kwargs", {}), _D_IGNORED, source, "the discriminator")
    c_dim = _int(kw.get("label_size", 0), "label_size", source)
    if c_dim:
        raise CheckpointError(f"{source}: the discriminator is class-conditional (label_size {c_dim}); "
                              "dragkit's discriminator is unconditional")
    kw.require("architecture", lambda v: v == "resnet", "resnet", "only the resnet discriminator is supported")
    kw.require("nonlinearity", lambda v: v == "lrelu", "lrelu", "only leaky ReLU networks are supported")
    kw.require("fmap_decay", lambda v: v == 1, 1, "channel counts must halve with each doubling of resolution")
    kw.require("fmap_min", lambda v: v == 1, 1, "a channel floor other than 1 is not supported")
    kw.require("use_spectral_norm", lambda v: v is False, False, "spectral normalisation is not supported")
    kw.require("score_size", lambda v: v == 1, 1, "only one score per image is supported")
    kw.require("score_max", lambda v: v == 1, 1, "only one score per image is supported")
    kernel = kw.get("resample_kernel", [1, 3, 3, 1])
    if _kernel(kernel, source) != [1.0, 3.0, 3.0, 1.0]:
        raise CheckpointError(f"{source}: the discriminator's resample_kernel is {kernel!r}; "
                              "dragkit's discriminator uses [1, 3, 3, 1]")
    default_group = _D_BUILD.get(func or "D_stylegan2", 4)
    group = kw.get("mbstd_group_size", default_group)
    if group is None:
        raise CheckpointError(f"{source}: the discriminator's minibatch-std group is the whole batch "
                              "(mbstd_group_size None), which dragkit's discriminator does not support")
    res = _int(kw.get("resolution", 1024), "resolution", source, 8)
    kwargs: dict[str, Any] = {
        "img_resolution": res,
        "img_channels": _int(kw.get("num_channels", 3), "num_channels", source, 1),
        "channel_base": 2 * _int(kw.get("fmap_base", 16384), "fmap_base", source, 1),
        "channel_max": _int(kw.get("fmap_max", 512), "fmap_max", source, 1),
        "mbstd_group_size": _int(group, "mbstd_group_size", source, 1),
        "mbstd_num_channels": _int(kw.get("mbstd_num_features", 1), "mbstd_num_features", source, 1),
        "conv_clamp": _number_or_none(kw.get("conv_clamp", None), "conv_clamp", source),
        "c_dim": 0,
        "architecture": "resnet",
    }
    _int(kw.get("num_fp16_res", 0), "num_fp16_res", source)  # fp16 is a training speed-up; fp32 here
    kw.check_unknown()
    tf = collect_tf_variables(state, source)
    expected = _expected_state(Discriminator, kwargs, source, _held(tf), "discriminator")
    out, used = _convert_variables(expected, tf, _d_rule, source)
    extra = sorted(set(tf) - used)
    if extra:
        raise CheckpointError(f"{source}: unexpected TensorFlow variable {extra[0]!r} in the discriminator"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    return TFConversion(kwargs, out)
