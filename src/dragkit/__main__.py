"""``python -m dragkit`` (what ``torchrun -m dragkit train ...`` runs): the ``dragkit`` command."""
import sys

from .cli import main

sys.exit(main())
