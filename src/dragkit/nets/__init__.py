"""StyleGAN2 and StyleGAN3 networks in pure PyTorch with NVIDIA's parameter names.

``Generator`` is StyleGAN2 (square, or StyleGAN-Human's ``square=False``
H x H/2 layout); ``StyleGAN3Generator`` is the alias-free generator
(configs T and R) of :mod:`dragkit.nets.stylegan3`.  ``nets`` imports
nothing from the rest of dragkit.
"""
from .generator import (
    Generator,
    MappingNetwork,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGBLayer,
)
from .stylegan3 import Generator as StyleGAN3Generator

__all__ = [
    "Generator",
    "MappingNetwork",
    "StyleGAN3Generator",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
]
