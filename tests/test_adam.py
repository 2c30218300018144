"""The drag's own Adam: bit-identical to torch.optim.Adam, without importing torch._dynamo."""

import subprocess
import sys

import pytest
import torch

from dragkit.drag.adam import LatentAdam


@pytest.mark.parametrize("lr", [0.002, 0.004, 0.02])
def test_steps_are_bit_identical_to_torch_adam(lr):
    g = torch.Generator().manual_seed(0)
    start = torch.randn(1, 6, 64, generator=g)
    a, b = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    ours, theirs = LatentAdam(a, lr=lr), torch.optim.Adam([b], lr=lr)
    for _ in range(40):
        grad = torch.randn(start.shape, generator=g) * 10 ** float(torch.randint(-4, 2, (1,), generator=g))
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
        assert torch.equal(a, b)


def test_no_gradient_is_no_step_and_a_bad_lr_is_refused():
    w = torch.ones(3, requires_grad=True)
    opt = LatentAdam(w, lr=0.1)
    opt.step()
    assert torch.equal(w, torch.ones(3)) and opt.steps == 0
    with pytest.raises(ValueError, match="lr must be positive"):
        LatentAdam(w, lr=0.0)


def test_a_drag_step_does_not_import_dynamo():
    code = (
        "import sys\n"
        "from dragkit import load_model, DragSession\n"
        "s = DragSession(load_model('toy'), seed=1)\n"
        "s.add_point(handle=(12, 13), target=(20, 13))\n"
        "s.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
