"""``layers`` on a model with fewer W codes than the default 6: the default means every code.

What a user would notice: ``DragSession(G)`` with default options refusing a tiny (8 px, 4-code)
model, or a drag on it moving codes it was not asked to move.
"""
from __future__ import annotations

import pytest
import torch

from dragkit.drag.options import DragOptions, option_limits
from dragkit.drag.session import DragSession
from dragkit.errors import SpecError
from dragkit.nets import Generator, StyleGAN3Generator


def tiny8() -> Generator:
    """An 8 px StyleGAN2: blocks 4 and 8, ``num_ws = 4``."""
    torch.manual_seed(0)
    return Generator(8, 0, 8, 8, 3, mapping_kwargs={"num_layers": 2},
                     synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval().requires_grad_(False)


def test_the_default_layers_clamp_to_a_model_with_fewer_codes():
    G = tiny8()
    assert G.num_ws == 4 < DragOptions().layers
    assert DragOptions().resolved(G).layers == 4
    assert DragOptions(layers=3).resolved(G).layers == 3  # a value the model has is kept
    s = DragSession(G, seed=1, options=DragOptions(lr=0.05))
    start = s.latent.clone()
    s.add_point((2, 3), (5, 4))
    results = list(s.run(max_steps=3))
    assert results[-1].step == 3
    assert not torch.equal(s.latent[:, :4], start[:, :4])  # every one of the 4 codes is optimised


def test_layers_two_ways_on_a_small_model_and_the_static_bound():
    G = tiny8()
    s = DragSession(G, seed=1, options=DragOptions(lr=0.05, layers=2))
    start = s.latent.clone()
    s.add_point((2, 3), (5, 4))
    list(s.run(max_steps=3))
    assert torch.equal(s.latent[:, 2:], start[:, 2:]) and not torch.equal(s.latent[:, :2], start[:, :2])
    assert DragOptions(layers=64).resolved(G).layers == 4  # any value above num_ws is "every code"
    with pytest.raises(SpecError, match="layers"):
        DragOptions(layers=65).validate(G)  # the static range still holds
    with pytest.raises(SpecError, match="layers"):
        DragOptions(layers=0).validate(G)
    assert option_limits(G)["layers"].lo == 1


def test_stylegan3_with_few_layers_drags_with_the_default_layers():
    torch.manual_seed(0)
    G = StyleGAN3Generator(8, 0, 8, 16, 3, channel_base=256, channel_max=8, num_layers=3,
                           num_critical=1).eval().requires_grad_(False)
    assert G.num_ws == 5
    s = DragSession(G, seed=0, options=DragOptions(lr=0.05))
    s.add_point((6, 8), (9, 8))
    assert list(s.run(max_steps=2))[-1].step == 2
    assert s.options.resolved(G).layers == 5
