"""Architecture configs of checkpoints: checked before anything is allocated.

Every reader gets a generator's (or discriminator's) constructor arguments
from the file - recorded ``_init_kwargs``, the native JSON, or shapes -
and a hostile file can declare anything there (``w_dim: 300000`` asks for
360 GB; ``num_layers: 10000000`` for ten million layers).  This module is
the one place where such a config becomes a network:

1. :func:`check_generator_kwargs` / :func:`check_discriminator_kwargs`
   validate every field by type and range (a pydantic schema; a float
   resolution, a negative size or an unknown key is refused);
2. :func:`build_bounded` constructs the network while counting every
   element it allocates, and refuses as soon as the count passes what the
   file's own tensors hold (so memory is bounded by the file, never by
   its claims) - then the caller compares names and shapes before a single
   tensor of the file is copied (:func:`compare_shapes`).

(Constructing on PyTorch's ``meta`` device would also avoid allocation, but
its first use imports ``torch._dynamo`` and sympy: measured 5-8 s on the
2-core development machine, added to every load; the counting mode costs
nothing measurable.)

Tensors handed over by ``torch.load`` are checked by
:func:`check_tensor_backing`: a tensor whose size/stride claims more
elements than its storage holds (zero or overlapping strides) is refused,
so fake shapes cannot feed shape inference.

Why this module is long (~450 lines): the schemas of every family's
constructor arguments (StyleGAN2, StyleGAN3, the discriminator) and the
bounded construction are one security boundary, kept in one file so that
what a checkpoint may declare is read in one place.
"""
from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Sequence, Union

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch.overrides import TorchFunctionMode

from ..errors import CheckpointError

__all__ = [
    "MAX_RESOLUTION",
    "MAX_FEATURES",
    "MAX_ELEMENTS",
    "GeneratorArch",
    "StyleGAN3Arch",
    "DiscriminatorArch",
    "check_generator_kwargs",
    "check_stylegan3_kwargs",
    "check_discriminator_kwargs",
    "build_bounded",
    "compare_shapes",
    "required_tensor",
    "numbered_run",
    "check_tensor_backing",
    "total_elements",
]

#: Largest output resolution accepted (a power of two).
MAX_RESOLUTION = 4096
#: Largest latent / feature / channel count accepted.
MAX_FEATURES = 8192
#: Largest class-label size accepted.
MAX_C_DIM = 100_000
#: Most mapping layers accepted (NVIDIA: 8; StyleGAN-XL style: 2-4).
MAX_MAPPING_LAYERS = 32
#: Most elements (parameters + buffers) one network may have: 2^31, 8 GiB in fp32.
MAX_ELEMENTS = 2**31

_Features = Annotated[int, Field(strict=True, ge=1, le=MAX_FEATURES)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]


def _odd(v: int) -> int:
    if v % 2 != 1:
        raise ValueError("must be odd")
    return v


#: A convolution kernel size: odd, 1 to 7.
_OddKernel = Annotated[int, Field(strict=True, ge=1, le=7), AfterValidator(_odd)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class MappingArch(_Strict):
    """``mapping_kwargs`` of :class:`dragkit.nets.Generator`."""

    num_layers: Annotated[int, Field(strict=True, ge=1, le=MAX_MAPPING_LAYERS)] = 8
    embed_features: Optional[_Features] = None
    layer_features: Optional[_Features] = None
    activation: Literal["lrelu", "linear"] = "lrelu"
    lr_multiplier: Annotated[float, Field(gt=0, le=1e4, allow_inf_nan=False)] = 0.01
    w_avg_beta: Optional[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = 0.995


class SynthesisArch(_Strict):
    """``synthesis_kwargs`` of :class:`dragkit.nets.Generator` (NVIDIA's names)."""

    channel_base: Annotated[int, Field(strict=True, ge=1, le=2**24)] = 32768
    channel_max: _Features = 512
    num_fp16_res: Annotated[int, Field(strict=True, ge=0, le=16)] = 0
    architecture: Literal["orig", "skip", "resnet"] = "skip"
    conv_clamp: Optional[Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]] = None
    use_noise: bool = True
    kernel_size: _OddKernel = 3
    activation: Literal["lrelu", "linear"] = "lrelu"
    resample_filter: Optional[Annotated[list[_Finite], Field(min_length=1, max_length=8)]] = None
    square: bool = True  # False: StyleGAN-Human's H x H/2 maps
    # NVIDIA speed switches: accepted, no effect on the maths.
    use_fp16: Optional[bool] = None
    fp16_channels_last: Optional[bool] = None
    fused_modconv_default: Optional[Union[bool, Literal["inference_only"]]] = None


def _power_of_two(v: int, lo: int) -> int:
    if v < lo or v & (v - 1):
        raise ValueError(f"must be a power of two between {lo} and {MAX_RESOLUTION}")
    return v


class _GeneratorTop(_Strict):
    """The top-level constructor arguments every generator family shares (then its ``mapping_kwargs``
    and ``synthesis_kwargs``)."""

    z_dim: Annotated[int, Field(strict=True, ge=0, le=MAX_FEATURES)]
    c_dim: Annotated[int, Field(strict=True, ge=0, le=MAX_C_DIM)] = 0
    w_dim: _Features
    img_resolution: Annotated[int, Field(strict=True, ge=4, le=MAX_RESOLUTION)]
    img_channels: Annotated[int, Field(strict=True, ge=1, le=16)] = 3

    @field_validator("img_resolution")
    @classmethod
    def _pow2(cls, v: int) -> int:
        return _power_of_two(v, 4)

    @model_validator(mode="after")
    def _latent(self) -> "_GeneratorTop":
        if self.z_dim == 0 and self.c_dim == 0:
            raise ValueError("z_dim and c_dim cannot both be 0")
        return self


class GeneratorArch(_GeneratorTop):
    """Constructor arguments of :class:`dragkit.nets.Generator`, every field bounded."""

    mapping_kwargs: MappingArch = MappingArch()
    synthesis_kwargs: SynthesisArch = SynthesisArch()


class StyleGAN3MappingArch(_Strict):
    """``mapping_kwargs`` of :class:`dragkit.nets.StyleGAN3Generator` (NVIDIA's defaults)."""

    num_layers: Annotated[int, Field(strict=True, ge=1, le=MAX_MAPPING_LAYERS)] = 2
    lr_multiplier: Annotated[float, Field(gt=0, le=1e4, allow_inf_nan=False)] = 0.01
    w_avg_beta: Optional[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = 0.998


#: Most synthesis layers of a StyleGAN3 generator accepted (NVIDIA: 14).
MAX_STYLEGAN3_LAYERS = 64


class StyleGAN3SynthesisArch(_Strict):
    """Synthesis arguments of :class:`dragkit.nets.StyleGAN3Generator` (NVIDIA's names and defaults).

    The bounds keep every derived size small: sampling rates are powers of
    two between 1 and ``img_resolution``, maps at most ``img_resolution +
    2 * margin_size`` pixels, FIR filters at most ``filter_size *
    lrelu_upsampling * (rate ratio)`` taps.
    """

    channel_base: Annotated[int, Field(strict=True, ge=1, le=2**24)] = 32768
    channel_max: _Features = 512
    num_layers: Annotated[int, Field(strict=True, ge=1, le=MAX_STYLEGAN3_LAYERS)] = 14
    num_critical: Annotated[int, Field(strict=True, ge=0, le=MAX_STYLEGAN3_LAYERS)] = 2
    first_cutoff: Annotated[float, Field(gt=0, le=MAX_RESOLUTION, allow_inf_nan=False)] = 2
    first_stopband: Annotated[float, Field(ge=0.5, le=2 * MAX_RESOLUTION, allow_inf_nan=False)] = 2**2.1
    last_stopband_rel: Annotated[float, Field(ge=1, le=16, allow_inf_nan=False)] = 2**0.3
    margin_size: Annotated[int, Field(strict=True, ge=0, le=256)] = 10
    output_scale: Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)] = 0.25
    num_fp16_res: Annotated[int, Field(strict=True, ge=0, le=MAX_STYLEGAN3_LAYERS)] = 4
    conv_kernel: _OddKernel = 3
    filter_size: Annotated[int, Field(strict=True, ge=1, le=16)] = 6
    lrelu_upsampling: Annotated[int, Field(strict=True, ge=1, le=8)] = 2
    use_radial_filters: bool = False
    conv_clamp: Optional[Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]] = 256
    magnitude_ema_beta: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.999
    use_fp16: Optional[bool] = None  # NVIDIA speed switch: no effect on the maths

    @model_validator(mode="after")
    def _critical(self) -> "StyleGAN3SynthesisArch":
        if self.num_critical >= self.num_layers:
            raise ValueError(f"num_critical ({self.num_critical}) must be below num_layers ({self.num_layers})")
        return self


class StyleGAN3Arch(_GeneratorTop):
    """Constructor arguments of :class:`dragkit.nets.StyleGAN3Generator`, every field bounded."""

    mapping_kwargs: StyleGAN3MappingArch = StyleGAN3MappingArch()
    synthesis_kwargs: StyleGAN3SynthesisArch = StyleGAN3SynthesisArch()


class DiscriminatorArch(_Strict):
    """Constructor arguments of :class:`dragkit.nets.discriminator.Discriminator`."""

    img_resolution: Annotated[int, Field(strict=True, ge=8, le=MAX_RESOLUTION)]
    img_channels: Annotated[int, Field(strict=True, ge=1, le=16)] = 3
    channel_base: Annotated[int, Field(strict=True, ge=1, le=2**24)] = 32768
    channel_max: _Features = 512
    mbstd_group_size: Annotated[int, Field(strict=True, ge=1, le=256)] = 4
    mbstd_num_channels: Annotated[int, Field(strict=True, ge=0, le=64)] = 1
    conv_clamp: Optional[Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]] = 256
    c_dim: Literal[0] = 0
    architecture: Literal["resnet"] = "resnet"

    @field_validator("img_resolution")
    @classmethod
    def _pow2(cls, v: int) -> int:
        return _power_of_two(v, 8)


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "config"
    value = repr(err.get("input"))
    if len(value) > 40:
        value = value[:37] + "..."
    return f"{loc}: {err.get('msg', 'invalid')} (got {value})"


_SYNTHESIS_KEYS = frozenset(SynthesisArch.model_fields)
_SG3_SYNTHESIS_KEYS = frozenset(StyleGAN3SynthesisArch.model_fields)


def check_generator_kwargs(kwargs: Any, source: str) -> dict[str, Any]:
    """Validate a StyleGAN2 generator config; returns it normalised (synthesis kwargs nested).

    Synthesis arguments passed flat (the stylegan3 code base's
    ``networks_stylegan2.Generator``) are moved under ``synthesis_kwargs``.

    Raises:
        CheckpointError: naming the first bad field, its problem and value.
    """
    return _check_nested(kwargs, source, _SYNTHESIS_KEYS, GeneratorArch)


def check_stylegan3_kwargs(kwargs: Any, source: str) -> dict[str, Any]:
    """Validate a StyleGAN3 generator config (flat synthesis arguments as NVIDIA records them, or nested).

    Raises:
        CheckpointError: naming the first bad field, its problem and value.
    """
    return _check_nested(kwargs, source, _SG3_SYNTHESIS_KEYS, StyleGAN3Arch)


def _check_nested(kwargs: Any, source: str, synthesis_keys: frozenset, schema: type[BaseModel]) -> dict[str, Any]:
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{source}: the architecture config is not an object")
    kw = dict(kwargs)
    flat = {k: kw.pop(k) for k in list(kw) if k in synthesis_keys}
    nested = kw.get("synthesis_kwargs")
    if flat:
        if nested is not None and not isinstance(nested, Mapping):
            raise CheckpointError(f"{source}: architecture field synthesis_kwargs is not an object")
        both = sorted(set(flat) & set(nested or {}))
        if both:
            raise CheckpointError(f"{source}: architecture field {both[0]!r} given twice")
        kw["synthesis_kwargs"] = {**dict(nested or {}), **flat}
    for key in ("mapping_kwargs", "synthesis_kwargs"):
        if kw.get(key) is None:
            kw.pop(key, None)
    try:
        arch = schema.model_validate(kw)
    except ValidationError as exc:
        raise CheckpointError(f"{source}: bad architecture field {_validation_message(exc)}") from None
    return _dump(arch, kw)


def check_discriminator_kwargs(kwargs: Any, source: str) -> dict[str, Any]:
    """Validate a discriminator config (as :func:`check_generator_kwargs`)."""
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{source}: the discriminator config is not an object")
    try:
        arch = DiscriminatorArch.model_validate(dict(kwargs))
    except ValidationError as exc:
        raise CheckpointError(f"{source}: bad discriminator field {_validation_message(exc)}") from None
    return arch.model_dump()


def _dump(arch: BaseModel, given: Mapping[str, Any]) -> dict[str, Any]:
    """The validated config with only the keys that were given (defaults stay implicit)."""
    out = arch.model_dump(exclude_unset=True)
    for key in ("mapping_kwargs", "synthesis_kwargs"):
        if key in given:
            out[key] = getattr(arch, key).model_dump(exclude_unset=True)
    return out


# --------------------------------------------------------------------------
# Construction bounded by what the file holds.

_FACTORIES = {"randn", "rand", "zeros", "ones", "empty", "full", "randint", "normal", "empty_strided"}


def _requested(func: Callable, args: tuple, kwargs: Mapping[str, Any]) -> int:
    """Elements a factory call asks for, read from its size argument (0 if not a factory)."""
    name = getattr(func, "__name__", "")
    if name not in _FACTORIES:
        return 0
    size = kwargs.get("size")
    if size is None and args:
        first = args[1] if name == "randint" and len(args) > 1 and isinstance(args[1], (list, tuple)) else args[0]
        size = first if isinstance(first, (list, tuple, torch.Size)) else [a for a in args if isinstance(a, int)]
    try:
        dims = [int(d) for d in size]
    except (TypeError, ValueError):
        return 0
    return math.prod(max(d, 0) for d in dims)


class _AllocationBudget(TorchFunctionMode):
    """Counts elements allocated inside the block; refuses a call that would pass ``limit``."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__()
        self.limit = int(limit)
        self.what = what
        self.used = 0
        self._charged: set[int] = set()  # storages already counted (views and Parameters share them)

    def _charge(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise CheckpointError(self.what)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        ask = _requested(func, args, kwargs)
        if ask:
            self._charge(ask)  # before the allocation happens
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.layout == torch.strided:
            ptr = out.untyped_storage().data_ptr()
            if ptr and ptr not in self._charged:
                self._charged.add(ptr)
                if not ask:  # results of arithmetic (randn(...) / lr) count after the fact
                    self._charge(out.numel())
        return out


def total_elements(shapes: Mapping[str, Sequence[int]]) -> int:
    """Sum of ``prod(shape)`` over a state dict's shapes."""
    return sum(math.prod(int(d) for d in s) for s in shapes.values())


def build_bounded(factory: Callable[..., torch.nn.Module], kwargs: Mapping[str, Any], holds: int,
                  source: str, what: str = "generator") -> torch.nn.Module:
    """Construct ``factory(**kwargs)`` on the CPU, allocating at most about what the file holds.

    Args:
        holds: elements of the file's own tensors for this network; the
            construction may allocate at most ``3 * holds + 2**20`` elements
            (temporaries included) and never more than :data:`MAX_ELEMENTS`.

    Raises:
        CheckpointError: the config asks for more than that, or the
            constructor refuses it (its message, one line).
    """
    limit = min(3 * int(holds) + 2**20, MAX_ELEMENTS)
    budget = _AllocationBudget(
        limit, f"{source}: the recorded architecture needs more memory than the file's tensors hold "
               f"(over {limit:,} values for {int(holds):,} stored); refusing to build the {what}")
    try:
        with budget:
            return factory(**kwargs)
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError, ZeroDivisionError) as exc:
        text = str(exc).strip().splitlines()
        raise CheckpointError(f"{source}: cannot build the {what} from its config "
                              f"({text[0][:200] if text else type(exc).__name__})") from None


def compare_shapes(expected: Mapping[str, Sequence[int]], found: Mapping[str, Sequence[int]], source: str) -> None:
    """Names and shapes of a file's tensors against the network's; an error names the first difference."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: missing tensor {missing[0]!r}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor {extra[0]!r}"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    for k, shape in found.items():
        if tuple(shape) != tuple(expected[k]):
            raise CheckpointError(
                f"{source}: tensor {k!r} has shape {list(shape)}, the network expects {list(expected[k])}"
            )


def required_tensor(state: Mapping[str, Any], key: str, source: str) -> Any:
    """``state[key]``, or a CheckpointError naming the missing tensor."""
    if key not in state:
        raise CheckpointError(f"{source}: missing tensor {key!r}")
    return state[key]


def numbered_run(state: Mapping[str, Any], pattern: re.Pattern[str], template: str, first: int, source: str,
                 hint: str = "") -> int:
    """How many keys of ``state`` match ``pattern`` (group 1: their number), numbered ``first, first + 1, ...``.

    Raises:
        CheckpointError: none matches (the message names ``template`` of
            ``first`` and adds ``hint``), or the numbers have a gap (named).
    """
    found = sorted(int(m.group(1)) for k in state if (m := pattern.match(k)))
    if found and found == list(range(first, first + len(found))):
        return len(found)
    gap = next(i for i in itertools.count(first) if i not in found)
    raise CheckpointError(f"{source}: missing tensor {template.format(gap)!r}" + ("" if found else hint))


def check_tensor_backing(t: Any, name: str, source: str) -> torch.Tensor:
    """Refuse a tensor whose size/stride reaches past its storage or claims more elements than it holds.

    ``torch.load`` rebuilds tensors with whatever sizes and strides the file
    gives; a zero stride lets a 4-byte storage claim a ``[300000, 300000]``
    shape.  Such a tensor is refused here before its shape is read.
    """
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{source}: {name!r} is not a tensor")
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        raise CheckpointError(f"{source}: {name!r} is not a plain CPU tensor")
    numel = t.numel()
    if numel == 0:
        return t
    if any(s < 0 for s in t.stride()):
        raise CheckpointError(f"{source}: tensor {name!r} has negative strides")
    item = t.element_size()
    held = t.untyped_storage().nbytes() // item
    reach = t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1
    if reach > held or numel > held:
        raise CheckpointError(f"{source}: tensor {name!r} claims {numel:,} values but its storage holds {held:,} "
                              "(zero or overlapping strides); refusing it")
    return t
