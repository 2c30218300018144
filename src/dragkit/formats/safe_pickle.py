"""The restricted unpickler behind NVIDIA pickles: an allow-list of inert stand-ins.

:func:`safe_unpickle` is a :class:`pickle.Unpickler` whose ``find_class``
answers from a small allow-list, and nothing else:

* tensor and storage rebuilders (storage blobs are parsed by
  :mod:`.legacy_storage`, never given to ``torch.load``; a tensor may not
  reach past or claim more elements than its storage), returning inert
  stand-ins on which a pickle ``BUILD`` is refused,
* ``collections.OrderedDict``, ``builtins.set``/``frozenset``, an
  ``EasyDict`` stand-in (a plain ``dict`` subclass),
* NumPy scalars/arrays of numeric dtypes only (object dtypes are refused),
* a stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``
  that only *records* the class name, init arguments and state
  (:class:`PersistentRecord`); ``module_src`` is kept as text and never
  executed,
* a stand-in for TensorFlow-era ``dnnlib.tflib.network.Network`` objects
  (:class:`TFNetworkRecord`) that records the pickled state as data; its
  ``build_module_src`` (TensorFlow source that NVIDIA's loader executes)
  is dropped unread.

Any other global is refused with a :class:`~dragkit.errors.CheckpointError`
naming it.  After loading, :func:`_finalize` swaps the stand-ins for real
tensors and arrays, visiting every object once (tuples included), so the
work is bounded by what the file holds; a callable (an allowed class or
function that the file stored as a value instead of calling it) is refused
anywhere in the loaded tree, dict keys and set members included.
"""
# Why this module is long (~510 lines): the allow-list is a security boundary; every stand-in it
# admits sits beside the check that keeps it inert, so it can be read (and audited) in one place.
from __future__ import annotations

import collections
import math
import pickle
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .legacy_storage import StorageRef, decode_storage_blob

__all__ = ["safe_unpickle", "PersistentRecord", "TFNetworkRecord", "EasyDict", "PlainModuleRecord", "MAX_DEPTH"]

MAX_DEPTH = 64
_MAX_DEPTH = MAX_DEPTH
#: Most objects walked after unpickling (a real snapshot has a few thousand).
_MAX_NODES = 2_000_000

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


class TFNetworkRecord:
    """What a TensorFlow-era ``dnnlib.tflib.network.Network`` becomes here: its pickled state, as data.

    NVIDIA's ``Network.__setstate__`` executes the state's
    ``build_module_src`` (the TensorFlow source of the network) and builds a
    TensorFlow graph.  This stand-in only stores the state dict of the one
    ``BUILD`` the pickle may apply; ``build_module_src`` must be text and is
    dropped at once (only its length is kept), never compiled, executed or
    parsed.  Constructor arguments (a ``REDUCE`` calling ``Network(...)``)
    and a second ``BUILD`` are refused.  The state's contents are checked
    as plain data after unpickling (``formats.tf_pkl.tf_network_state``).

    Attributes:
        state: the recorded state (``version``, ``name``, ``static_kwargs``,
            ``components``, ``build_func_name``, ``variables``, ...), or
            None before the ``BUILD``.
        module_src_chars: length of the dropped ``build_module_src``.
    """

    __slots__ = ("state", "module_src_chars")

    def __new__(cls, *args: Any, **kwargs: Any) -> "TFNetworkRecord":
        if args or kwargs:
            raise CheckpointError("refusing a TensorFlow network built from constructor arguments "
                                  "(a Network is only ever restored from its pickled state)")
        obj = object.__new__(cls)
        obj.state = None
        obj.module_src_chars = 0
        return obj

    def __setstate__(self, state: Any) -> None:
        if self.state is not None:
            raise CheckpointError("malformed TensorFlow network (its state is set twice)")
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise CheckpointError("malformed TensorFlow network (its state is not a dict with text keys)")
        state = dict(state)
        src = state.pop("build_module_src", "")
        if not isinstance(src, str):
            raise CheckpointError("malformed TensorFlow network (build_module_src is not text)")
        self.module_src_chars = len(src)
        self.state = state

    def __repr__(self) -> str:
        name = self.state.get("name") if isinstance(self.state, dict) else None
        return f"TFNetworkRecord({name!r})"


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
    if cls is TFNetworkRecord and base is object and state is None:
        return TFNetworkRecord()
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
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
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

class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        raise CheckpointError(
            f"refusing to load global '{module}.{name}' from {self._source} "
            "(NVIDIA pickles may only hold tensors, numbers and network records; dragkit never runs code from a file)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"{self._source}: unexpected persistent id in pickle (a torch.save file, not an NVIDIA pickle?)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


_PLAIN_KEYS = (str, bytes, int, float, bool, type(None), np.generic)


def _callable_message(o: Any) -> str:
    name = getattr(o, "__qualname__", None) or type(o).__name__
    return (f"refusing a callable ({name}) stored as data in the pickle: network files hold tensors, "
            "numbers and records only")


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
        elif isinstance(o, (PersistentRecord, _PlainModuleRecord, TFNetworkRecord)):
            done[key] = o
            if isinstance(o, TFNetworkRecord) and o.state is None:
                raise CheckpointError("malformed TensorFlow network (no state)")
            o.state = walk(o.state, depth + 1)
            return o
        elif isinstance(o, dict):
            done[key] = o
            for k in list(o.keys()):
                if not isinstance(k, _PLAIN_KEYS):
                    raise CheckpointError(_callable_message(k) if callable(k) else
                                          f"malformed pickle (a dict key of type {type(k).__name__})")
                o[k] = walk(o[k], depth + 1)
            return o
        elif isinstance(o, list):
            done[key] = o
            o[:] = [walk(v, depth + 1) for v in o]
            return o
        elif isinstance(o, tuple):
            out = tuple(walk(v, depth + 1) for v in o)
        elif isinstance(o, (set, frozenset)):
            for m in o:  # names of non-persistent buffers: plain values only, no stand-ins inside
                if not isinstance(m, _PLAIN_KEYS):
                    raise CheckpointError(_callable_message(m) if callable(m) else
                                          f"malformed pickle (a set member of type {type(m).__name__})")
            out = o
        elif callable(o):
            raise CheckpointError(_callable_message(o))
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


PlainModuleRecord = _PlainModuleRecord
