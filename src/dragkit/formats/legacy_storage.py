"""Legacy ``torch.save`` storage blobs, decoded without ``torch.load``.

A tensor in a plain pickle (NVIDIA's snapshots) reduces to
``torch._utils._rebuild_tensor_v2(storage, ...)`` and its storage to
``torch.storage._load_from_bytes(blob)``, where ``blob`` is the legacy
(non-zip) ``torch.save`` of that one storage.  PyTorch decodes it with
``torch.load(weights_only=False)``; this module parses it by hand instead,
so no part of the file is ever given to ``torch.load`` (and the
``weights_only`` advisories of older PyTorch releases, CVE-2025-32434 and
CVE-2026-24747, do not apply to ``.pkl`` files).

The blob is five consecutive pickles and the raw data (written by
``torch.serialization._legacy_save``)::

    MAGIC_NUMBER (int)  PROTOCOL_VERSION 1001 (int)  sys_info (dict)
    the object: persistent id ('storage', <torch.XStorage>, key, location, numel, None)
    [key]  (the storage keys, a list of one str)
    int64 little-endian element count, then count * itemsize bytes

The four plain pickles may name no global at all; the object pickle may
name only a ``torch.XStorage`` class of a numeric dtype.  The declared
element count must match the bytes present *before* anything is
allocated, so a blob can never claim more memory than it holds.
"""
from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import torch

from ..errors import CheckpointError

__all__ = ["decode_storage_blob", "StorageRef", "STORAGE_DTYPES"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: ``torch.<name>`` storage classes a blob may name, and their element type.
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


class StorageRef:
    """A decoded storage as the pickle reader hands it around: data only.

    The pickle machinery only ever sees this plain object (never a torch
    storage), and a pickle ``BUILD`` on it is refused, so nothing in the
    file can swap its bytes or its dtype after the bounds were checked.

    Attributes:
        dtype: element type.
        untyped: the bytes, a :class:`torch.UntypedStorage`.
        numel: number of elements (``nbytes // itemsize``).
    """

    __slots__ = ("dtype", "untyped", "numel")

    def __init__(self, dtype: torch.dtype, untyped: torch.UntypedStorage) -> None:
        self.dtype = dtype
        self.untyped = untyped
        self.numel = untyped.nbytes() // _itemsize(dtype)

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("refusing a pickle BUILD on a tensor storage")

    def __reduce__(self) -> Any:  # pragma: no cover - never pickled
        raise TypeError("StorageRef is not picklable")


class _StorageClass:
    """What ``torch.XStorage`` resolves to inside a blob: a name and a dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise CheckpointError(f"refusing to call torch.{self.name} in a storage blob")


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class _PlainUnpickler(pickle.Unpickler):
    """Header pickles: numbers, strings, lists, dicts; no global, no persistent id."""

    def find_class(self, module: str, name: str) -> Any:
        raise CheckpointError(f"refusing global '{module}.{name}' in a storage blob")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("unexpected persistent id in a storage blob header")


class _ObjectUnpickler(_PlainUnpickler):
    """The object pickle: exactly one persistent id naming a storage class."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.refs: list[tuple[_StorageClass, str, int]] = []

    def find_class(self, module: str, name: str) -> Any:
        if (module == "torch" or (module, name) == ("torch.storage", "UntypedStorage")) and name in STORAGE_DTYPES:
            return _StorageClass(name, STORAGE_DTYPES[name])
        raise CheckpointError(f"refusing global '{module}.{name}' in a storage blob")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage")):
            raise CheckpointError("malformed storage record in a storage blob")
        _tag, cls, key, location, numel, view = pid
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if isinstance(location, bytes):
            location = location.decode("ascii", "replace")
        if not isinstance(cls, _StorageClass) or not isinstance(key, str) or not isinstance(location, str):
            raise CheckpointError("malformed storage record in a storage blob")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError("malformed storage size in a storage blob")
        if view is not None:
            raise CheckpointError("refusing a storage view in a storage blob")
        self.refs.append((cls, key, numel))
        return ("storage", len(self.refs) - 1)


def _load(unpickler_cls: type, f: io.BytesIO) -> Any:
    return unpickler_cls(f).load()


def decode_storage_blob(data: Any) -> StorageRef:
    """Decode the argument of ``torch.storage._load_from_bytes`` into a :class:`StorageRef`.

    Raises:
        CheckpointError: not a legacy single-storage blob, a refused global,
            a size that does not match the bytes present, or trailing data.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("unreadable tensor storage (expected bytes)")
    data = bytes(data)
    f = io.BytesIO(data)
    try:
        if _load(_PlainUnpickler, f) != MAGIC_NUMBER:
            raise CheckpointError("not a torch.save blob (bad magic number)")
        if _load(_PlainUnpickler, f) != PROTOCOL_VERSION:
            raise CheckpointError("unsupported torch.save protocol version")
        info = _load(_PlainUnpickler, f)
        if not isinstance(info, dict) or info.get("little_endian") is not True:
            raise CheckpointError("big-endian or malformed torch.save header")
        obj_unpickler = _ObjectUnpickler(f)
        obj = obj_unpickler.load()
        keys = _load(_PlainUnpickler, f)
    except CheckpointError as exc:
        raise CheckpointError(f"unreadable tensor storage ({exc})") from None
    except RecursionError:
        raise CheckpointError("unreadable tensor storage (nests too deeply)") from None
    except Exception as exc:  # truncated / corrupt pickles raise many types
        raise CheckpointError(f"unreadable tensor storage ({type(exc).__name__}: {str(exc)[:120]})") from None
    refs = obj_unpickler.refs
    if obj != ("storage", 0) or len(refs) != 1:
        raise CheckpointError("unreadable tensor storage (expected exactly one storage)")
    cls, key, numel = refs[0]
    if keys != [key]:
        raise CheckpointError("unreadable tensor storage (storage keys do not match)")
    itemsize = _itemsize(cls.dtype)
    head = f.read(8)
    if len(head) != 8:
        raise CheckpointError("unreadable tensor storage (truncated)")
    (count,) = struct.unpack("<q", head)
    body = memoryview(data)[f.tell():]
    # Checked before any allocation: the blob must hold every byte it declares.
    if count != numel or count < 0 or count * itemsize != len(body):
        raise CheckpointError(
            f"unreadable tensor storage (declares {numel} elements, holds {len(body)} bytes)"
        )
    untyped = torch.UntypedStorage.from_buffer(bytes(body), dtype=torch.uint8) if len(body) else torch.UntypedStorage(0)
    return StorageRef(cls.dtype, untyped)
