"""Issue 12's rule: no module of the package over ~400 lines without a reason written at its top."""
from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dragkit"
LIMIT = 420  # "~400 lines"
REASON = re.compile(r"Why this module is long \(~(\d+) lines\)")


def test_every_long_module_says_why_at_its_top_with_its_size():
    missing, stale = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) <= LIMIT:
            continue
        m = REASON.search("\n".join(lines[:80]))
        name = str(path.relative_to(PACKAGE))
        if m is None:
            missing.append(f"{name} ({len(lines)} lines)")
        elif abs(int(m.group(1)) - len(lines)) > 0.15 * len(lines):
            stale.append(f"{name}: says ~{m.group(1)}, has {len(lines)}")
    assert not missing, "long modules without 'Why this module is long (~N lines)' at the top: " + ", ".join(missing)
    assert not stale, "the stated sizes are out of date: " + "; ".join(stale)
