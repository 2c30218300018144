"""Moved: the toy-world sweeps are ``dragkit eval toy --sweep KEY=V1,V2`` now (docs/RESULTS.md).

This shim only says so and shows the equivalent command; it runs nothing.
The old script's options map onto the eval suite like this::

    python benchmarks/tune_toy.py --drags 30 --only r1=6:8,lr --base r1=3 --mask 5
    dragkit eval toy --n 30 --handles 1 --mask on --mask-margin 5 --base r1=3 \\
        --sweep r1=6,8 --sweep lr=0.001,0.002,0.004,0.008 --out runs/sweep

(``--mask off`` for the old default without a mask; instead of ``--checkpoint``,
pass a model file, e.g. one written by ``dragkit train --export NAME``, as
``--model NAME.safetensors``; ``--proxy`` scoring is gone.)
"""
import sys

if __name__ == "__main__":
    print(__doc__.strip(), file=sys.stderr)
    sys.exit(2)
