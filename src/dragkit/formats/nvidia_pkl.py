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

This reader instead uses a :class:`pickle.Unpickler` whose ``find_class``
answers from a small allow-list of stand-ins:

* tensor and storage rebuilders (storage blobs are parsed by
  :mod:`.legacy_storage`, never given to ``torch.load``; a tensor may not
  reach past or claim more elements than its storage, and a pickle
  ``BUILD`` on a tensor or storage is refused),
* ``collections.OrderedDict``, ``builtins.set``/``frozenset``, an
  ``EasyDict`` stand-in (a plain ``dict`` subclass),
* NumPy scalars/arrays of numeric dtypes only (object dtypes are refused),
* a stand-in for ``_reconstruct_persistent_obj`` that only *records* the
  class name, init arguments and state.  ``module_src`` is kept as text and
  never executed.

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
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import CheckpointError
from ..nets import Generator
from .arch import build_bounded, check_discriminator_kwargs, total_elements
from .legacy_storage import StorageRef, decode_storage_blob
from .native import build_generator, load_state_strict

__all__ = [
    "load_nvidia_pkl",
    "read_nvidia_pkl",
    "safe_unpickle",
    "PersistentRecord",
    "EasyDict",
    "generator_state_from_record",
    "init_kwargs_from_record",
    "infer_init_kwargs",
    "apply_recorded_attributes",
]

_MAX_DEPTH = 64
#: Most objects walked after unpickling (a real snapshot has a few thousand).
_MAX_NODES = 2_000_000
#: Most module records in one network's tree (StyleGAN2 at 1024 px: ~200).
_MAX_MODULES = 100_000
#: Most values in recorded init kwargs (a handful in real files).
_MAX_KWARG_NODES = 10_000
_TRAINING_ONLY_MAPPING_KEYS = ("freeze_layers", "freeze_embed")
_GENERATOR_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")


# --------------------------------------------------------------------------
# Stand-ins returned by find_class.  None of them can run code from the file.


class EasyDict(dict):
    """Stand-in for ``dnnlib.EasyDict``: a plain dict with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PersistentRecord:
    """What an NVIDIA persistent object becomes here: data only, never code.

    Attributes:
        class_name: e.g. ``'Generator'``, ``'SynthesisBlock'``.
        version: NVIDIA's persistence format version (6 in released code).
        module_src: the embedded module source, as inert text.
        state: the object's recorded ``__dict__`` (a dict).
    """

    __slots__ = ("class_name", "version", "module_src", "state")

    def __init__(self, class_name: str, version: Any, module_src: str, state: dict) -> None:
        self.class_name = class_name
        self.version = version
        self.module_src = module_src
        self.state = state

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("malformed persistent object (unexpected BUILD state)")

    @property
    def init_kwargs(self) -> dict:
        kw = self.state.get("_init_kwargs")
        return dict(kw) if isinstance(kw, dict) else {}

    @property
    def init_args(self) -> tuple:
        args = self.state.get("_init_args")
        return tuple(args) if isinstance(args, (tuple, list)) else ()

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r})"


class _PlainModuleRecord:
    """A plain ``torch.nn`` container (``ModuleList`` ...) recorded as data."""

    torch_class = "torch.nn.Module"

    def __init__(self) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"malformed {self.torch_class} state")
        self.state = state


def _plain_module_marker(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1] + "Record", (_PlainModuleRecord,), {"torch_class": qualname})


_PLAIN_MODULES = {
    ("torch.nn.modules.container", name): _plain_module_marker(f"torch.nn.{name}")
    for name in ("ModuleList", "ModuleDict", "Sequential")
}
_PLAIN_MODULES[("torch.nn.modules.linear", "Identity")] = _plain_module_marker("torch.nn.Identity")


def _record_persistent_obj(meta: Any) -> PersistentRecord:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``."""
    if not isinstance(meta, dict):
        raise CheckpointError("malformed persistent object (meta is not a dict)")
    if meta.get("type") != "class":
        raise CheckpointError(f"unsupported persistent object type {meta.get('type')!r}")
    class_name = meta.get("class_name")
    state = meta.get("state")
    src = meta.get("module_src", "")
    if not isinstance(class_name, str) or not isinstance(state, dict) or not isinstance(src, str):
        raise CheckpointError("malformed persistent object (class_name/state/module_src)")
    return PersistentRecord(class_name, meta.get("version"), src, state)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Safe ``copyreg._reconstructor`` (protocol 0/1 pickles): stand-ins only."""
    if isinstance(cls, type) and issubclass(cls, _PlainModuleRecord) and base is object:
        return cls()
    if cls is EasyDict and base is dict:
        return EasyDict(state or {})
    raise CheckpointError(f"refusing to reconstruct {getattr(cls, '__name__', cls)!r}")


# -- tensors -----------------------------------------------------------------

class _TensorRef:
    """A rebuilt tensor while unpickling: the pickle machinery never holds a torch tensor.

    ``BUILD`` on a real tensor would call ``Tensor.__setstate__`` and let the
    file re-point it at any storage, size and stride, skipping the bounds
    check; on this stand-in it is refused.  :func:`_finalize` swaps in the
    tensors once the whole file is read.
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("refusing a pickle BUILD on a tensor (it could change its storage after the bounds check)")


def _load_storage_from_bytes(data: Any) -> StorageRef:
    """Safe ``torch.storage._load_from_bytes``: a legacy torch.save of one storage, parsed by hand."""
    return decode_storage_blob(data)


def _is_int_tuple(x: Any) -> bool:
    return isinstance(x, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> _TensorRef:
    """Safe ``torch._utils._rebuild_tensor(_v2)``: checks every argument's type and the storage bounds."""
    if not isinstance(storage, StorageRef):
        raise CheckpointError("malformed tensor (storage is not a tensor storage)")
    if isinstance(storage_offset, bool) or not isinstance(storage_offset, int) or storage_offset < 0 \
            or not _is_int_tuple(size) or not _is_int_tuple(stride):
        raise CheckpointError("malformed tensor (offset/size/stride)")
    if len(size) != len(stride) or len(size) > 8:
        raise CheckpointError("malformed tensor (size and stride lengths differ)")
    # rest = (requires_grad, backward_hooks[, metadata]); hooks must be empty.
    if len(rest) > 1 and rest[1] is not None and (not hasattr(rest[1], "__len__") or len(rest[1]) != 0):
        raise CheckpointError("refusing a tensor with backward hooks")
    available = storage.numel
    numel = math.prod(size)
    needed = storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if numel else 0
    if needed > available:
        raise CheckpointError("malformed tensor (extends past its storage)")
    if numel > available:  # zero or overlapping strides: a fake shape
        raise CheckpointError(f"malformed tensor (claims {numel:,} values, its storage holds {available:,})")
    try:
        t = torch.empty((0,), dtype=storage.dtype)
        t.set_(storage.untyped, storage_offset, tuple(size), tuple(stride))
    except Exception as exc:
        raise CheckpointError(f"malformed tensor ({_first_line(exc)})") from None
    return _TensorRef(t)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *rest: Any) -> _TensorRef:
    """Safe ``torch._utils._rebuild_parameter(_with_state)`` (the parameter is kept as its tensor)."""
    if not isinstance(data, _TensorRef):
        raise CheckpointError("malformed parameter (data is not a tensor)")
    if backward_hooks and (not hasattr(backward_hooks, "__len__") or len(backward_hooks) != 0):
        raise CheckpointError("refusing a parameter with backward hooks")
    if rest and rest[0]:
        raise CheckpointError("refusing a parameter with extra state")
    return _TensorRef(data.tensor)


def _torch_size(dims: Any = ()) -> tuple:
    if not _is_int_tuple(dims):
        raise CheckpointError("malformed torch.Size")
    return tuple(dims)


# -- numpy -------------------------------------------------------------------

_NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex


class _DType:
    """Stand-in for ``numpy.dtype(spec)``: numeric dtypes only."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(spec, str):
            raise CheckpointError("refusing a numpy dtype that is not a plain type code")
        try:
            dt = np.dtype(spec)
        except TypeError:
            raise CheckpointError(f"unknown numpy dtype {spec!r}") from None
        if dt.kind not in _NUMERIC_KINDS or dt.hasobject or dt.fields is not None or dt.subdtype is not None:
            raise CheckpointError(f"refusing numpy data of dtype {dt.str!r} ({'object' if dt.kind == 'O' else dt.kind}); only numeric arrays are allowed")
        self.dtype = dt

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 2:
            raise CheckpointError("malformed numpy dtype state")
        if len(state) >= 5 and any(x is not None for x in state[2:5]):
            raise CheckpointError("refusing a structured numpy dtype")
        order = state[1]
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)
        elif order not in ("|", "="):
            raise CheckpointError("malformed numpy dtype byte order")


def _as_dtype(dt: Any) -> np.dtype:
    if isinstance(dt, _DType):
        return dt.dtype
    raise CheckpointError("malformed numpy data (dtype)")


def _np_scalar(dt: Any, data: Any = None) -> Any:
    """Safe ``numpy.core.multiarray.scalar``."""
    dtype = _as_dtype(dt)
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise CheckpointError("malformed numpy scalar")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


class _NDArrayType:
    """Stand-in for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


class _NDArrayStub:
    """Receives ``ndarray.__setstate__``'s tuple and builds a numeric array."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise CheckpointError("malformed numpy array state")
        _version, shape, dt, fortran, raw = state
        dtype = _as_dtype(dt)
        self.array = _array_from_bytes(raw, dtype, shape, "F" if fortran else "C")


def _array_from_bytes(raw: Any, dtype: np.dtype, shape: Any, order: str) -> np.ndarray:
    if not isinstance(raw, (bytes, bytearray)) or not _is_int_tuple(shape) or order not in ("C", "F"):
        raise CheckpointError("malformed numpy array")
    count = int(np.prod(shape)) if len(shape) else 1
    if len(raw) != count * dtype.itemsize:
        raise CheckpointError("malformed numpy array (size does not match its shape)")
    return np.frombuffer(bytes(raw), dtype=dtype).reshape(tuple(shape), order=order).copy()


def _np_reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> _NDArrayStub:
    """Safe ``numpy.core.multiarray._reconstruct``: plain ndarrays only."""
    if cls is not _NDArrayType:
        raise CheckpointError("refusing a numpy array subclass")
    return _NDArrayStub()


def _np_frombuffer(buf: Any, dt: Any, shape: Any, order: Any) -> np.ndarray:
    """Safe ``numpy.core.numeric._frombuffer`` (pickle protocol 5)."""
    return _array_from_bytes(bytes(buf) if isinstance(buf, (bytes, bytearray, memoryview)) else buf, _as_dtype(dt), shape, order)


# -- the allow-list ------------------------------------------------------------

_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "object"): object,
    ("builtins", "dict"): dict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("dnnlib", "EasyDict"): EasyDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): _torch_size,
    ("numpy", "dtype"): _DType,
    ("numpy", "ndarray"): _NDArrayType,
    **_PLAIN_MODULES,
}
for _np_core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_np_core}.multiarray", "scalar")] = _np_scalar
    _ALLOWED[(f"{_np_core}.multiarray", "_reconstruct")] = _np_reconstruct
    _ALLOWED[(f"{_np_core}.numeric", "_frombuffer")] = _np_frombuffer

_TF_HINT = {
    ("dnnlib.tflib.network", "Network"): "this is a TensorFlow StyleGAN pickle; convert it to PyTorch "
    "with NVIDIA's stylegan2-ada-pytorch legacy.py first",
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        hint = _TF_HINT.get((module, name))
        if hint:
            raise CheckpointError(f"{self._source}: {hint}")
        raise CheckpointError(
            f"refusing to load global '{module}.{name}' from {self._source} "
            "(NVIDIA pickles may only hold tensors, numbers and network records; dragkit never runs code from a file)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"{self._source}: unexpected persistent id in pickle (a torch.save file, not an NVIDIA pickle?)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _finalize(obj: Any) -> Any:
    """Swap the tensor and numpy stand-ins for real values, everywhere in the loaded tree.

    Every object is visited once (results are memoised by identity, tuples
    included), so a small pickle of shared tuples cannot make the walk
    exponential; depth and the number of objects are bounded too.
    """
    done: dict[int, Any] = {}
    keep: list[Any] = []  # keeps visited objects alive so their ids stay unique
    count = [0]

    def walk(o: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise CheckpointError("pickle nests too deeply")
        if isinstance(o, (str, bytes, int, float, bool, type(None), np.generic, np.ndarray, torch.Tensor)):
            return o
        key = id(o)
        if key in done:
            return done[key]
        count[0] += 1
        if count[0] > _MAX_NODES:
            raise CheckpointError(f"pickle holds more than {_MAX_NODES:,} objects")
        keep.append(o)
        if isinstance(o, _TensorRef):
            out: Any = o.tensor
        elif isinstance(o, _NDArrayStub):
            if o.array is None:
                raise CheckpointError("malformed numpy array (no data)")
            out = o.array
        elif isinstance(o, StorageRef):
            raise CheckpointError("malformed pickle (a bare tensor storage)")
        elif isinstance(o, (PersistentRecord, _PlainModuleRecord)):
            done[key] = o
            o.state = walk(o.state, depth + 1)
            return o
        elif isinstance(o, dict):
            done[key] = o
            for k in list(o.keys()):
                o[k] = walk(o[k], depth + 1)
            return o
        elif isinstance(o, list):
            done[key] = o
            o[:] = [walk(v, depth + 1) for v in o]
            return o
        elif isinstance(o, tuple):
            out = tuple(walk(v, depth + 1) for v in o)
        elif isinstance(o, (set, frozenset)):
            out = o  # hashable members only: no stand-ins inside
        else:
            out = o
        done[key] = out
        return out

    return walk(obj, 0)


def safe_unpickle(file: Any, source: str = "<pickle>") -> Any:
    """Unpickle ``file`` (a binary file object) with the restricted unpickler.

    Raises:
        CheckpointError: a refused global (named in the message), or a
            truncated / corrupt / non-pickle file.
    """
    try:
        obj = _RestrictedUnpickler(file, source).load()
    except CheckpointError as exc:
        msg = str(exc)
        raise CheckpointError(msg if source in msg else f"{source}: {msg}") from None
    except RecursionError:
        raise CheckpointError(f"{source}: pickle nests too deeply") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, MemoryError, UnicodeDecodeError, RuntimeError) as exc:
        raise CheckpointError(
            f"{source}: not a readable pickle (truncated or corrupt: {type(exc).__name__}: {_first_line(exc)})"
        ) from None
    try:
        return _finalize(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


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

    Positional ``_init_args`` are mapped onto NVIDIA's parameter order.
    ``synthesis_kwargs`` passed flat (stylegan3 code base) stay flat; the
    dragkit :class:`~dragkit.nets.Generator` accepts both.
    """
    kwargs = rec.state.get("_init_kwargs")
    args = rec.state.get("_init_args") or ()
    if kwargs is None and not args:
        return None
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise CheckpointError(f"{source}: malformed recorded init arguments of {rec.class_name}")
    out = _plain(dict(kwargs), "_init_kwargs", source)
    if len(args) > len(_GENERATOR_KEYS):
        raise CheckpointError(f"{source}: too many positional init arguments for Generator")
    for key, value in zip(_GENERATOR_KEYS, args):
        if key in out:
            raise CheckpointError(f"{source}: init argument {key!r} given twice")
        out[key] = _plain(value, f"_init_args.{key}", source)
    if not {"z_dim", "c_dim", "w_dim", "img_resolution"}.issubset(out):
        return None
    mapping = out.get("mapping_kwargs")
    if isinstance(mapping, dict):  # fine-tuning options of popular forks; no effect on inference
        for key in _TRAINING_ONLY_MAPPING_KEYS:
            mapping.pop(key, None)
    return out


_BLOCK_RE = re.compile(r"^synthesis\.b(\d+)\.")
_FC_RE = re.compile(r"^mapping\.fc(\d+)\.weight$")


def infer_init_kwargs(state: Mapping[str, torch.Tensor], source: str = "<checkpoint>") -> dict[str, Any]:
    """Infer a StyleGAN2 generator's architecture from its tensors (NVIDIA names).

    Reads z/w/c dims and mapping depth from ``mapping.*``, the resolution,
    channel counts (-> ``channel_base``/``channel_max``), image channels and
    architecture (``skip``/``resnet``/``orig``) from ``synthesis.*``.  What
    shapes cannot tell (``lr_multiplier``, ``conv_clamp``) takes NVIDIA's
    inference defaults (0.01, None).

    Raises:
        CheckpointError: a tensor the inference needs is missing, or the
            channel counts follow no ``min(channel_base // res, channel_max)``.
    """

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"{source}: missing tensor {key!r}")
        return state[key]

    fcs = sorted(int(m.group(1)) for k in state if (m := _FC_RE.match(k)))
    if not fcs:
        raise CheckpointError(f"{source}: missing tensor 'mapping.fc0.weight'")
    if fcs != list(range(len(fcs))):
        raise CheckpointError(f"{source}: missing tensor 'mapping.fc{next(i for i in range(len(fcs) + 1) if i not in fcs)}.weight'")
    num_layers = len(fcs)
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

    Networks in it are :class:`PersistentRecord` objects (data only).
    """
    p = Path(path)
    source = str(p)
    try:
        with open(p, "rb") as f:
            data = safe_unpickle(f, source)
    except OSError as exc:
        raise CheckpointError(f"{source}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: not an NVIDIA network pickle (top level is {type(data).__name__}, expected a dict with 'G_ema')")
    return data


def _select_generator(data: Mapping[str, Any], source: str) -> tuple[str, PersistentRecord]:
    for key in ("G_ema", "G"):
        rec = data.get(key)
        if rec is None:
            continue
        if not isinstance(rec, PersistentRecord):
            raise CheckpointError(f"{source}: {key!r} is not an NVIDIA network object")
        return key, rec
    keys = ", ".join(sorted(str(k) for k in data)) or "(none)"
    raise CheckpointError(f"{source}: no generator in pickle (expected 'G_ema' or 'G'; found {keys})")


def load_nvidia_pkl(path: str | os.PathLike[str]) -> Generator:
    """Load the generator of an NVIDIA StyleGAN2 pickle as an eval-mode :class:`Generator`.

    Uses ``G_ema`` (falls back to ``G``).  Never executes code from the file.

    Raises:
        CheckpointError: refused global (named), corrupt/truncated file, not a
            StyleGAN2 generator, or a tensor that does not fit the recorded
            architecture (named).
    """
    source = str(path)
    data = read_nvidia_pkl(path)
    key, rec = _select_generator(data, source)
    state = generator_state_from_record(rec, source)
    if rec.class_name != "Generator":
        raise CheckpointError(f"{source}: {key!r} is a {rec.class_name!r}, not a StyleGAN2 Generator")
    if "synthesis.input.affine.weight" in state or any(k.startswith("synthesis.L0_") for k in state):
        raise CheckpointError(f"{source}: this is a StyleGAN3 (alias-free) generator; dragkit supports StyleGAN2 generators only")
    kwargs = init_kwargs_from_record(rec, source)
    inferred = kwargs is None
    if inferred:
        kwargs = infer_init_kwargs(state, source)
    try:
        kwargs = apply_recorded_attributes(kwargs, rec)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    G = build_generator(kwargs, source, holds=total_elements({k: v.shape for k, v in state.items()}))
    load_state_strict(G, state, source)
    G.eval().requires_grad_(False)
    G.dragkit_metadata = {  # type: ignore[attr-defined]
        "source_format": "nvidia-pkl",
        "network": key,
        "architecture_from": "shapes" if inferred else "_init_kwargs",
    }
    return G


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
    from ..nets.discriminator import Discriminator

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
    D = build_bounded(Discriminator, config, total_elements({k: v.shape for k, v in state.items()}), source,
                      "discriminator")
    load_state_strict(D, state, source)
    return D.eval().requires_grad_(False)


def load_nvidia_pkl_discriminator(path: str | os.PathLike[str]):
    """The discriminator ``D`` of an NVIDIA training snapshot, or None when the pickle holds none."""
    data = read_nvidia_pkl(path)
    rec = data.get("D")
    return None if rec is None else discriminator_from_record(rec, str(path))
