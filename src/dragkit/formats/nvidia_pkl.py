"""NVIDIA StyleGAN2 network pickles, read without running code from the file.

``stylegan2-ada-pytorch`` and the ``stylegan3`` code base save training
snapshots as plain pickles of a dict (``G``, ``D``, ``G_ema``,
``augment_pipe``, ``training_set_kwargs``, ...).  Their networks are
"persistent" objects: each reduces to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where ``meta``
holds the class's whole module *source code* (``module_src``), the class
name and the object's ``__dict__`` (``_parameters``, ``_buffers``,
``_modules``, ``_init_kwargs``, ...).  NVIDIA's loader ``exec``-utes that
source; a pickle can also name any other callable.  Both are arbitrary code
execution for whoever crafted the file.

This reader instead unpickles with an allow-list of inert stand-ins
(:mod:`.safe_pickle`: tensors, storages, containers, numeric NumPy values,
and a stand-in for ``_reconstruct_persistent_obj`` that only records the
class name, init arguments and state; ``module_src`` stays text).
Any other global is refused with a :class:`~dragkit.errors.CheckpointError`
naming it.  The generator's state dict is then collected from the recorded
``_parameters``/``_buffers``/``_modules`` of ``G_ema`` (else ``G``), its
architecture read from the recorded ``_init_kwargs`` (or inferred from the
tensor shapes when absent, never from the file name) and checked field
by field (:mod:`.arch`), and a :class:`dragkit.nets.Generator` is built,
allocating no more than the file's tensors hold, and loaded strictly.

Work is bounded by what the file holds: shared (memoised) objects are
walked once, and the trees walked after unpickling (the loaded object,
the module tree, the init kwargs) have node budgets.
"""
# Why this module is long (~690 lines): one format end to end - the record walk, the init-argument
# inference from tensor shapes and the G/D selection share the same bounds on what a file may claim.
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import CheckpointError
from ..nets import Generator, StyleGAN3Generator
from .arch import (
    build_bounded,
    check_discriminator_kwargs,
    check_generator_kwargs,
    numbered_run,
    required_tensor,
    total_elements,
)
from .native import build_generator, load_state_strict
from .safe_pickle import MAX_DEPTH as _MAX_DEPTH
from .safe_pickle import EasyDict, PersistentRecord, TFNetworkRecord, safe_unpickle
from .safe_pickle import PlainModuleRecord as _PlainModuleRecord

__all__ = [
    "load_nvidia_pkl",
    "read_nvidia_pkl",
    "safe_unpickle",
    "PersistentRecord",
    "TFNetworkRecord",
    "EasyDict",
    "is_stylegan3_state",
    "stylegan3_kwargs_from_record",
    "square_from_shapes",
    "decide_square",
    "generator_state_from_record",
    "init_kwargs_from_record",
    "infer_init_kwargs",
    "apply_recorded_attributes",
]

#: Most module records in one network's tree (StyleGAN2 at 1024 px: ~200).
_MAX_MODULES = 100_000
#: Most values in recorded init kwargs (a handful in real files).
_MAX_KWARG_NODES = 10_000
_TRAINING_ONLY_MAPPING_KEYS = ("freeze_layers", "freeze_embed")
_GENERATOR_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
#: StyleGAN-Human's ``training/networks.py`` Generator: ``square`` is the fifth positional argument.
_HUMAN_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "square", "img_channels", "mapping_kwargs",
               "synthesis_kwargs", "padding")


# --------------------------------------------------------------------------
# From records to a generator.


def _module_state(rec: Any, source: str, prefix: str, out: dict[str, torch.Tensor], depth: int,
                  visits: list[int]) -> None:
    if depth > _MAX_DEPTH:
        raise CheckpointError(f"{source}: module tree nests too deeply")
    visits[0] += 1
    if visits[0] > _MAX_MODULES:  # shared submodules would otherwise be walked 2^depth times
        raise CheckpointError(f"{source}: the network has more than {_MAX_MODULES:,} modules")
    if not isinstance(rec, (PersistentRecord, _PlainModuleRecord)):
        raise CheckpointError(f"{source}: {prefix.rstrip('.') or 'network'} is not a network module record")
    st = rec.state
    non_persistent = st.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        entries = st.get(group) or {}
        if not isinstance(entries, dict):
            raise CheckpointError(f"{source}: malformed {group} in {prefix.rstrip('.') or 'network'}")
        for name, t in entries.items():
            if t is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(name, str) or not isinstance(t, torch.Tensor):
                raise CheckpointError(f"{source}: {prefix}{name} is not a tensor")
            out[prefix + name] = t.detach()
    modules = st.get("_modules") or {}
    if not isinstance(modules, dict):
        raise CheckpointError(f"{source}: malformed _modules in {prefix.rstrip('.') or 'network'}")
    for name, sub in modules.items():
        if sub is None:
            continue
        if not isinstance(name, str):
            raise CheckpointError(f"{source}: malformed _modules in {prefix.rstrip('.') or 'network'}")
        _module_state(sub, source, f"{prefix}{name}.", out, depth + 1, visits)


def generator_state_from_record(rec: PersistentRecord, source: str = "<pickle>") -> dict[str, torch.Tensor]:
    """Collect a state dict (NVIDIA names) from a recorded network."""
    out: dict[str, torch.Tensor] = {}
    _module_state(rec, source, "", out, 0, [0])
    return out


def _plain(value: Any, where: str, source: str, _budget: list[int] | None = None, _depth: int = 0) -> Any:
    """Recorded init kwargs -> JSON-able Python values (or an error naming them).

    The output is a tree, so shared values would be copied once per use:
    its size and depth are bounded (:data:`_MAX_KWARG_NODES`), which bounds
    the work whatever the file shares.
    """
    budget = [0] if _budget is None else _budget
    budget[0] += 1
    if budget[0] > _MAX_KWARG_NODES or _depth > 16:
        raise CheckpointError(f"{source}: recorded init arguments are too large or nest too deeply ({where})")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(f"{source}: unsupported key of type {type(k).__name__} in {where}")
            out[str(k)] = _plain(v, f"{where}.{k}", source, budget, _depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, where, source, budget, _depth + 1) for v in value]
    if isinstance(value, np.ndarray) and value.ndim <= 1 and value.size <= _MAX_KWARG_NODES:
        return [_plain(v, where, source, budget, _depth + 1) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str) and len(value) <= 1000:
        return value
    raise CheckpointError(f"{source}: unsupported value of type {type(value).__name__} in {where}")


def init_kwargs_from_record(rec: PersistentRecord, source: str = "<pickle>") -> dict[str, Any] | None:
    """The generator's constructor arguments as recorded, or None if absent.

    Positional ``_init_args`` are mapped onto NVIDIA's parameter order, or
    onto StyleGAN-Human's ``(z_dim, c_dim, w_dim, img_resolution, square,
    img_channels, ...)`` when the fifth one is a bool.  StyleGAN-Human's
    top-level ``square`` moves into the synthesis arguments (dragkit's
    :class:`~dragkit.nets.Generator` takes it there); its ``padding`` (pad
    the image to a square for display) is dropped: dragkit shows the native
    ``H x W`` image.  ``synthesis_kwargs`` passed flat (stylegan3 code
    base) stay flat; dragkit's generators accept both.
    """
    kwargs = rec.state.get("_init_kwargs")
    args = rec.state.get("_init_args") or ()
    if kwargs is None and not args:
        return None
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise CheckpointError(f"{source}: malformed recorded init arguments of {rec.class_name}")
    out = _plain(dict(kwargs), "_init_kwargs", source)
    order = _HUMAN_KEYS if len(args) >= 5 and isinstance(args[4], (bool, np.bool_)) else _GENERATOR_KEYS
    if len(args) > len(order):
        raise CheckpointError(f"{source}: too many positional init arguments for Generator")
    for key, value in zip(order, args):
        if key in out:
            raise CheckpointError(f"{source}: init argument {key!r} given twice")
        out[key] = _plain(value, f"_init_args.{key}", source)
    if not {"z_dim", "c_dim", "w_dim", "img_resolution"}.issubset(out):
        return None
    mapping = out.get("mapping_kwargs")
    if isinstance(mapping, dict):  # fine-tuning options of popular forks; no effect on inference
        for key in _TRAINING_ONLY_MAPPING_KEYS:
            mapping.pop(key, None)
    padding = out.pop("padding", None)
    if padding is not None and not isinstance(padding, bool):
        raise CheckpointError(f"{source}: bad architecture field padding: not a bool (got {padding!r:.40})")
    if "square" in out:
        square = out.pop("square")
        if not isinstance(square, bool):
            raise CheckpointError(f"{source}: bad architecture field square: not a bool (got {square!r:.40})")
        syn = out.get("synthesis_kwargs")
        if isinstance(syn, dict):
            if syn.get("square", square) != square:
                raise CheckpointError(f"{source}: the recorded arguments give square twice, as {square} and {syn['square']}")
            syn["square"] = square
        elif syn is None:
            out["square"] = square  # flat synthesis arguments
        else:
            raise CheckpointError(f"bad architecture field synthesis_kwargs: not an object (got {syn!r:.40})")
    return out


_BLOCK_RE = re.compile(r"^synthesis\.b(\d+)\.")
_FC_RE = re.compile(r"^mapping\.fc(\d+)\.weight$")


def infer_init_kwargs(state: Mapping[str, torch.Tensor], source: str = "<checkpoint>") -> dict[str, Any]:
    """Infer a StyleGAN2 generator's architecture from its tensors (NVIDIA names).

    Reads z/w/c dims and mapping depth from ``mapping.*``, the resolution,
    channel counts (-> ``channel_base``/``channel_max``), image channels,
    architecture (``skip``/``resnet``/``orig``) and the aspect
    (:func:`square_from_shapes`: a ``C x 4 x 2`` constant is StyleGAN-Human's
    ``square=False``) from ``synthesis.*``.  What shapes cannot tell
    (``lr_multiplier``, ``conv_clamp``) takes NVIDIA's inference defaults
    (0.01, None).

    Raises:
        CheckpointError: a tensor the inference needs is missing, or the
            channel counts follow no ``min(channel_base // res, channel_max)``.
    """

    def need(key: str) -> torch.Tensor:
        return required_tensor(state, key, source)

    num_layers = numbered_run(state, _FC_RE, "mapping.fc{}.weight", 0, source)
    w_dim = int(need(f"mapping.fc{num_layers - 1}.weight").shape[0])
    fc0 = need("mapping.fc0.weight")
    c_dim = embed = 0
    if "mapping.embed.weight" in state:
        embed, c_dim = (int(s) for s in state["mapping.embed.weight"].shape)
    z_dim = int(fc0.shape[1]) - embed
    mapping_kwargs: dict[str, Any] = {"num_layers": num_layers}
    if num_layers > 1 and int(fc0.shape[0]) != w_dim:
        mapping_kwargs["layer_features"] = int(fc0.shape[0])
    if c_dim and embed != w_dim:
        mapping_kwargs["embed_features"] = embed
    if "mapping.w_avg" not in state:
        mapping_kwargs["w_avg_beta"] = None

    resolutions = sorted({int(m.group(1)) for k in state if (m := _BLOCK_RE.match(k))})
    if not resolutions or resolutions[0] != 4:
        raise CheckpointError(f"{source}: missing tensor 'synthesis.b4.const'")
    img_resolution = resolutions[-1]
    expected = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
    if resolutions != expected:
        missing = sorted(set(expected) - set(resolutions))
        raise CheckpointError(f"{source}: missing synthesis block 'synthesis.b{missing[0]}'" if missing else f"{source}: unexpected synthesis blocks")
    channels = {r: int(need(f"synthesis.b{r}.conv1.weight").shape[0]) for r in resolutions}
    img_channels = int(need(f"synthesis.b{img_resolution}.torgb.weight").shape[0])
    if any(f"synthesis.b{r}.skip.weight" in state for r in resolutions):
        architecture = "resnet"
    elif any(f"synthesis.b{r}.torgb.weight" in state for r in resolutions[:-1]):
        architecture = "skip"
    else:
        architecture = "orig"
    channel_max = max(channels.values())
    lo, hi = 1, None
    for r, ch in channels.items():
        if ch < channel_max:  # base // r == ch  <=>  ch*r <= base < (ch+1)*r
            lo = max(lo, ch * r)
            hi = (ch + 1) * r - 1 if hi is None else min(hi, (ch + 1) * r - 1)
        else:  # base // r >= channel_max
            lo = max(lo, channel_max * r)
    channel_base = lo
    if (hi is not None and lo > hi) or any(min(channel_base // r, channel_max) != ch for r, ch in channels.items()):
        raise CheckpointError(
            f"{source}: channel counts {channels} do not follow min(channel_base // res, channel_max)"
        )
    synthesis_kwargs: dict[str, Any] = {
        "channel_base": channel_base,
        "channel_max": channel_max,
        "architecture": architecture,
        "conv_clamp": None,
    }
    if not square_from_shapes(state, source):
        synthesis_kwargs["square"] = False
    if "synthesis.b4.conv1.noise_strength" not in state:
        synthesis_kwargs["use_noise"] = False
    ks = int(need("synthesis.b4.conv1.weight").shape[-1])
    if ks != 3:
        synthesis_kwargs["kernel_size"] = ks
    return {
        "z_dim": z_dim,
        "c_dim": c_dim,
        "w_dim": w_dim,
        "img_resolution": img_resolution,
        "img_channels": img_channels,
        "mapping_kwargs": mapping_kwargs,
        "synthesis_kwargs": synthesis_kwargs,
    }


def square_from_shapes(state: Mapping[str, torch.Tensor], source: str = "<checkpoint>") -> bool:
    """Whether a StyleGAN2 state dict is square, from ``synthesis.b4.const``.

    ``C x 4 x 4``: square (NVIDIA); ``C x 4 x 2``: StyleGAN-Human's
    ``square=False`` layout (every map ``R x R/2``, images ``H x H/2``).

    Raises:
        CheckpointError: the constant is missing or has any other shape.
    """
    const = state.get("synthesis.b4.const")
    if const is None:
        raise CheckpointError(f"{source}: missing tensor 'synthesis.b4.const'")
    shape = tuple(int(d) for d in const.shape)
    if len(shape) == 3 and shape[1:] == (4, 4):
        return True
    if len(shape) == 3 and shape[1:] == (4, 2):
        return False
    raise CheckpointError(f"{source}: tensor 'synthesis.b4.const' has shape {list(shape)}; expected "
                          "[C, 4, 4] (square) or [C, 4, 2] (StyleGAN-Human's H x H/2 layout)")


def _recorded_square(kwargs: Mapping[str, Any], rec: PersistentRecord) -> bool | None:
    """``square`` as the record says it (kwargs, else the attributes the modules stored), or None."""
    syn = kwargs.get("synthesis_kwargs")
    if isinstance(syn, dict) and isinstance(syn.get("square"), bool):
        return syn["square"]
    if isinstance(kwargs.get("square"), bool):
        return kwargs["square"]
    for node in (rec, _submodule(rec, "synthesis")):
        value = node.state.get("square") if node is not None else None
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    return None


def decide_square(kwargs: dict[str, Any], rec: PersistentRecord, state: Mapping[str, torch.Tensor],
                  source: str) -> dict[str, Any]:
    """Set the StyleGAN2 kwargs' ``square`` from the tensor shapes; refuse records that disagree.

    The released StyleGAN-Human pickles need not record ``square`` (the
    authors' loader passes ``square=False`` itself), so the shape of
    ``synthesis.b4.const`` decides; a record that does say it and disagrees
    with the shapes is one clear error.
    """
    if "synthesis.b4.const" not in state:
        return kwargs  # the strict load names the missing tensor
    shaped = square_from_shapes(state, source)
    recorded = _recorded_square(kwargs, rec)
    if recorded is not None and recorded != shaped:
        raise CheckpointError(
            f"{source}: the recorded architecture says square={recorded}, but tensor 'synthesis.b4.const' has shape "
            f"{list(state['synthesis.b4.const'].shape)} ({'a square' if shaped else 'an H x H/2 (StyleGAN-Human)'} "
            "layout); the file is inconsistent")
    syn = kwargs.get("synthesis_kwargs")
    if isinstance(syn, dict):
        syn = dict(syn)
        if shaped:
            syn.pop("square", None)
        else:
            syn["square"] = False
        kwargs["synthesis_kwargs"] = syn
        kwargs.pop("square", None)
    elif shaped:
        kwargs.pop("square", None)
    else:
        kwargs["square"] = False
    return kwargs


def _submodule(rec: Any, *names: str) -> Any:
    for name in names:
        modules = rec.state.get("_modules") if isinstance(rec, (PersistentRecord, _PlainModuleRecord)) else None
        if not isinstance(modules, dict) or name not in modules:
            return None
        rec = modules[name]
    return rec if isinstance(rec, (PersistentRecord, _PlainModuleRecord)) else None


def _number_or_none(value: Any) -> tuple[bool, Any]:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
        return True, value
    return False, None


def apply_recorded_attributes(kwargs: dict[str, Any], rec: PersistentRecord, img_resolution: int | None = None) -> dict[str, Any]:
    """Fill what the network really used from the recorded module attributes.

    Constructor defaults differ between code bases (``conv_clamp`` is None in
    stylegan2-ada-pytorch's ``SynthesisBlock`` but 256 in the stylegan3 code
    base's), and ``_init_kwargs`` only holds what was passed explicitly.
    The layers record the values they were built with (``conv_clamp``,
    the block's ``architecture``, the mapping's ``bias_gain`` =
    ``lr_multiplier``), so those win.
    """
    for key in ("mapping_kwargs", "synthesis_kwargs"):
        if kwargs.get(key) is not None and not isinstance(kwargs[key], dict):
            raise CheckpointError(f"bad architecture field {key}: not an object (got {kwargs[key]!r:.40})")
    flat = "synthesis_kwargs" not in kwargs
    syn_kwargs = kwargs if flat else dict(kwargs.get("synthesis_kwargs") or {})
    layer = _submodule(rec, "synthesis", "b4", "conv1")
    if layer is not None and "conv_clamp" in layer.state:
        ok, value = _number_or_none(layer.state["conv_clamp"])
        if ok:
            syn_kwargs["conv_clamp"] = value
    res = img_resolution or kwargs.get("img_resolution")
    block = _submodule(rec, "synthesis", f"b{res}") if res else None
    arch = block.state.get("architecture") if block is not None else None
    if isinstance(arch, str) and arch in ("orig", "skip", "resnet"):
        syn_kwargs["architecture"] = arch
    if not flat:
        kwargs["synthesis_kwargs"] = syn_kwargs
    fc0 = _submodule(rec, "mapping", "fc0")
    if fc0 is not None and "bias_gain" in fc0.state:
        ok, value = _number_or_none(fc0.state["bias_gain"])
        if ok and value is not None and value > 0:
            mapping = dict(kwargs.get("mapping_kwargs") or {})
            mapping["lr_multiplier"] = value
            kwargs["mapping_kwargs"] = mapping
    return kwargs


def read_nvidia_pkl(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Safely unpickle an NVIDIA snapshot; returns the top-level dict.

    Networks in it are :class:`PersistentRecord` objects (data only).  A
    TensorFlow-era pickle - a ``(G, D, Gs)`` tuple of
    ``dnnlib.tflib.network.Network`` objects - comes back as
    ``{'G': ..., 'D': ..., 'Gs': ...}`` of :class:`TFNetworkRecord` (data only).
    """
    p = Path(path)
    source = str(p)
    try:
        with open(p, "rb") as f:
            data = safe_unpickle(f, source)
    except OSError as exc:
        raise CheckpointError(f"{source}: cannot read ({exc.strerror})") from None
    if isinstance(data, tuple) and any(isinstance(x, TFNetworkRecord) for x in data):
        if len(data) != 3 or not all(isinstance(x, TFNetworkRecord) for x in data):
            raise CheckpointError(f"{source}: a TensorFlow network pickle holds a (G, D, Gs) tuple of networks; "
                                  f"this one holds a {len(data)}-tuple of other things")
        return {"G": data[0], "D": data[1], "Gs": data[2]}
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: not an NVIDIA network pickle (top level is {type(data).__name__}, expected a dict with 'G_ema')")
    return data


def _select_generator(data: Mapping[str, Any], source: str) -> tuple[str, PersistentRecord | TFNetworkRecord]:
    for key in ("G_ema", "Gs", "G"):
        rec = data.get(key)
        if rec is None:
            continue
        if not isinstance(rec, (PersistentRecord, TFNetworkRecord)):
            raise CheckpointError(f"{source}: {key!r} is not an NVIDIA network object")
        return key, rec
    keys = ", ".join(sorted(str(k) for k in data)) or "(none)"
    raise CheckpointError(f"{source}: no generator in pickle (expected 'G_ema' or 'G'; found {keys})")


def is_stylegan3_state(state: Mapping[str, Any]) -> bool:
    """Whether NVIDIA-named tensors are a StyleGAN3 generator's (Fourier input, ``L{i}_`` layers)."""
    return "synthesis.input.affine.weight" in state or any(k.startswith("synthesis.L0_") for k in state)


def load_nvidia_pkl(path: str | os.PathLike[str]) -> torch.nn.Module:
    """Load the generator of an NVIDIA pickle as an eval-mode dragkit generator.

    * stylegan2-ada-pytorch / stylegan3-code-base StyleGAN2 snapshots (and
      StyleGAN-Human's non-square ones): :class:`dragkit.nets.Generator`;
    * stylegan3 code base ``networks_stylegan3`` snapshots (configs T, R):
      :class:`dragkit.nets.StyleGAN3Generator`;
    * TensorFlow-era ``(G, D, Gs)`` pickles of NVIDIA's ``stylegan2`` /
      TF ``stylegan2-ada``: :class:`dragkit.nets.Generator` converted from
      ``Gs`` by :mod:`.tf_pkl`.

    Uses ``G_ema`` (``Gs``; falls back to ``G``).  Never executes code from
    the file.  ``G.dragkit_metadata["source_format"]`` is ``'nvidia-pkl'``
    or ``'tf-pkl'``.

    Raises:
        CheckpointError: refused global (named), corrupt/truncated file, an
            unsupported network, or a tensor that does not fit the recorded
            architecture (named).
    """
    source = str(path)
    data = read_nvidia_pkl(path)
    key, rec = _select_generator(data, source)
    if isinstance(rec, TFNetworkRecord):
        return _load_tf_generator(key, rec, source)
    state = generator_record_state(key, rec, source)
    if is_stylegan3_state(state):
        return _load_stylegan3(key, rec, state, source)
    kwargs, inferred = stylegan2_kwargs_from_record(rec, state, source)
    return _built_generator(kwargs, state, source, "nvidia-pkl", key, "shapes" if inferred else "_init_kwargs")


def generator_record_state(key: str, rec: PersistentRecord, source: str = "<pickle>") -> dict[str, torch.Tensor]:
    """The tensors of the generator record ``key`` (NVIDIA names).

    Raises:
        CheckpointError: a bad tensor, or a record that is not a ``Generator``.
    """
    state = generator_state_from_record(rec, source)
    if rec.class_name != "Generator":
        raise CheckpointError(f"{source}: {key!r} is a {rec.class_name!r}, not a StyleGAN Generator")
    return state


def stylegan2_kwargs_from_record(rec: PersistentRecord, state: Mapping[str, torch.Tensor],
                                 source: str = "<pickle>") -> tuple[dict[str, Any], bool]:
    """A StyleGAN2 generator record's checked constructor arguments, and whether they were inferred.

    The recorded ``_init_kwargs`` (else :func:`infer_init_kwargs` from the
    tensors, ``inferred`` True), completed by the attributes the modules
    recorded (:func:`apply_recorded_attributes`) and the aspect
    (:func:`decide_square`).

    Raises:
        CheckpointError: a bad or unsupported field (named), or tensors the inference cannot read.
    """
    kwargs = init_kwargs_from_record(rec, source)
    inferred = kwargs is None
    if inferred:
        kwargs = infer_init_kwargs(state, source)
    try:
        kwargs = apply_recorded_attributes(kwargs, rec)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    return decide_square(check_generator_kwargs(kwargs, source), rec, state, source), inferred


def _built_generator(kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: str, source_format: str,
                     key: str, architecture_from: str, network: str | None = None) -> torch.nn.Module:
    """The eval-mode generator of ``kwargs`` holding ``state`` (strictly), with its ``dragkit_metadata``."""
    extra = {} if network is None else {"network": network}
    G = build_generator(kwargs, source, holds=total_elements({k: v.shape for k, v in state.items()}), **extra)
    load_state_strict(G, state, source)
    G.eval().requires_grad_(False)
    G.dragkit_metadata = {  # type: ignore[attr-defined]
        "source_format": source_format,
        "network": key,
        "architecture_from": architecture_from,
    }
    return G


def _load_tf_generator(key: str, rec: TFNetworkRecord, source: str) -> Generator:
    from .tf_pkl import convert_tf_generator, tf_network_state

    conv = convert_tf_generator(tf_network_state(rec, source), source)
    return _built_generator(conv.init_kwargs, conv.state_dict, source, "tf-pkl", key, "static_kwargs")


def _synthesis_kwargs_of(kwargs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The synthesis arguments (nested dict, or the kwargs themselves when flat) and whether they are flat."""
    syn = kwargs.get("synthesis_kwargs")
    if syn is None:
        return kwargs, True
    if not isinstance(syn, dict):
        raise CheckpointError(f"bad architecture field synthesis_kwargs: not an object (got {syn!r:.40})")
    return syn, False


def stylegan3_kwargs_from_record(rec: PersistentRecord, source: str = "<pickle>") -> dict[str, Any]:
    """A StyleGAN3 generator record's constructor arguments, completed by what its modules recorded.

    The recorded ``_init_kwargs`` (flat synthesis arguments, as NVIDIA's
    ``train.py`` passes them) are the base; ``margin_size``,
    ``output_scale``, ``num_layers``, ``num_critical`` recorded by the
    synthesis network and ``conv_clamp`` recorded by its first layer win
    over them (``_init_kwargs`` hold only what was passed explicitly).
    StyleGAN-Human's StyleGAN3 variants (``square=False``: maps of ``H x
    H/2``; or an output ``resize``) are refused: dragkit's StyleGAN3 is square.

    Raises:
        CheckpointError: no recorded arguments, or an unsupported variant.
    """
    kwargs = init_kwargs_from_record(rec, source)
    if kwargs is None:
        raise CheckpointError(f"{source}: this StyleGAN3 generator has no recorded init arguments "
                              "(dragkit reads a StyleGAN3 architecture from the record, never guesses it)")
    syn, flat = _synthesis_kwargs_of(kwargs)
    resize = kwargs.pop("resize", None)
    square = syn.pop("square", True)
    synthesis = _submodule(rec, "synthesis")
    size = _submodule(synthesis, "input").state.get("size") if _submodule(synthesis, "input") is not None else None
    uneven = isinstance(size, np.ndarray) and size.size == 2 and int(size.reshape(-1)[0]) != int(size.reshape(-1)[1])
    if square is not True or uneven or resize is not None:
        raise CheckpointError(f"{source}: this is a StyleGAN-Human StyleGAN3 variant ("
                              + ("non-square maps" if square is not True or uneven else f"output resized to {resize!r:.20}")
                              + "); dragkit's StyleGAN3 generator is square and unresized")
    if synthesis is not None:
        for attr in ("margin_size", "output_scale", "num_layers", "num_critical"):
            ok, value = _number_or_none(synthesis.state.get(attr, "absent"))
            if ok and value is not None:
                syn[attr] = int(value) if attr != "output_scale" and float(value).is_integer() else value
        names = synthesis.state.get("layer_names")
        first = _submodule(synthesis, names[0]) if isinstance(names, list) and names and isinstance(names[0], str) else None
        if first is not None and "conv_clamp" in first.state:
            ok, value = _number_or_none(first.state["conv_clamp"])
            if ok:
                syn["conv_clamp"] = value
    if not flat:
        kwargs["synthesis_kwargs"] = syn
    return kwargs


def _load_stylegan3(key: str, rec: PersistentRecord, state: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    return _built_generator(stylegan3_kwargs_from_record(rec, source), state, source, "nvidia-pkl", key, "_init_kwargs",
                            network=StyleGAN3Generator.network_name)


_D_KEYS = ("c_dim", "img_resolution", "img_channels")


def discriminator_from_record(rec: Any, source: str = "<pickle>"):
    """An NVIDIA StyleGAN2 ``Discriminator`` record -> an eval-mode :class:`~dragkit.nets.discriminator.Discriminator`.

    Its architecture comes from the recorded ``_init_kwargs`` (``channel_base``,
    ``channel_max``, ``conv_clamp``, ``epilogue_kwargs.mbstd_*``); the FIR
    filters NVIDIA stores as buffers must be the standard ``[1, 3, 3, 1]``.

    Raises:
        CheckpointError: not a discriminator record, a conditional or
            non-resnet discriminator (not supported), or tensors that do not fit.
    """
    if not isinstance(rec, PersistentRecord) or rec.class_name != "Discriminator":
        name = getattr(rec, "class_name", type(rec).__name__)
        raise CheckpointError(f"{source}: 'D' is a {name!r}, not a StyleGAN2 Discriminator")
    kwargs = rec.state.get("_init_kwargs")
    args = rec.state.get("_init_args") or ()
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise CheckpointError(f"{source}: the discriminator has no recorded init arguments")
    kw = _plain(dict(kwargs), "D._init_kwargs", source)
    for key, value in zip(_D_KEYS, args):
        kw.setdefault(key, _plain(value, f"D._init_args.{key}", source))
    square = kw.pop("square", True)  # StyleGAN-Human's discriminators take it too
    if square is not True:
        raise CheckpointError(f"{source}: the discriminator is non-square (StyleGAN-Human, square={square!r:.10}); "
                              "dragkit's discriminator is square only")
    c_dim = kw.get("c_dim") or 0
    if isinstance(c_dim, bool) or not isinstance(c_dim, int):
        raise CheckpointError(f"{source}: bad discriminator field c_dim (got {c_dim!r:.40})")
    if c_dim != 0:
        raise CheckpointError(f"{source}: the discriminator is class-conditional (c_dim {kw['c_dim']}); "
                              "dragkit trains unconditional discriminators only")
    epilogue = kw.get("epilogue_kwargs") or {}
    if not isinstance(epilogue, dict):
        raise CheckpointError(f"{source}: the discriminator's epilogue_kwargs are not an object")
    config = check_discriminator_kwargs({
        "img_resolution": kw.get("img_resolution"), "img_channels": kw.get("img_channels", 3),
        "channel_base": kw.get("channel_base", 32768), "channel_max": kw.get("channel_max", 512),
        "mbstd_group_size": epilogue.get("mbstd_group_size", 4),
        "mbstd_num_channels": epilogue.get("mbstd_num_channels", 1),
        "conv_clamp": kw.get("conv_clamp"), "architecture": kw.get("architecture", "resnet"),
    }, source)
    state = generator_state_from_record(rec, source)
    standard = torch.tensor([1.0, 3.0, 3.0, 1.0])
    standard = torch.outer(standard, standard) / 64
    for key in [k for k in state if k.endswith("resample_filter")]:
        f = state.pop(key).float()
        if f.shape != standard.shape or not torch.allclose(f, standard):
            raise CheckpointError(f"{source}: {key} is not the standard [1, 3, 3, 1] filter")
    return _built_discriminator(config, state, source)


def load_nvidia_pkl_discriminator(path: str | os.PathLike[str]):
    """The discriminator ``D`` of an NVIDIA training snapshot, or None when the pickle holds none."""
    data = read_nvidia_pkl(path)
    rec = data.get("D")
    if isinstance(rec, TFNetworkRecord):
        return _tf_discriminator(rec, str(path))
    return None if rec is None else discriminator_from_record(rec, str(path))


def _tf_discriminator(rec: TFNetworkRecord, source: str):
    from .tf_pkl import convert_tf_discriminator, tf_network_state

    conv = convert_tf_discriminator(tf_network_state(rec, source), source)
    return _built_discriminator(check_discriminator_kwargs(conv.init_kwargs, source), conv.state_dict, source)


def _built_discriminator(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: str):
    """The eval-mode discriminator of a checked ``config`` holding ``state`` (strictly)."""
    from ..nets.discriminator import Discriminator

    D = build_bounded(Discriminator, config, total_elements({k: v.shape for k, v in state.items()}), source,
                      "discriminator")
    load_state_strict(D, state, source)
    return D.eval().requires_grad_(False)
