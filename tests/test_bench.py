"""``dragkit bench`` (issue 18): the table's structure and finite figures on the toy model (never timings)."""
from __future__ import annotations

import json
import math

import pytest

from dragkit.bench import BenchCase, ModelSpec, format_table, run_bench
from dragkit.cli import main


def test_bench_prints_the_table_beside_the_authors_loop(toy, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--model", "toy", "--steps", "2", "--threads", "1", "--mask", "off",
               "--precision", "fp32,bf16", "--frames", "2", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "load average" in text and "native bf16: " in text
    rows = [ln.split() for ln in text.splitlines() if ln.strip().startswith("1 ") and ln.split()[1] in ("no", "yes")]
    assert [(r[2], r[3], r[4]) for r in rows] == [("authors", "fp32", "-"), ("dragkit", "fp32", "off"),
                                                  ("dragkit", "bf16", "off")]
    for r in rows[1:]:
        assert r[8].endswith("x") and float(r[8][:-1]) > 0  # the ratio to the authors' loop, same run
    assert "frames/s" in text
    data = json.loads(out.read_text())
    assert len(data["results"]) == 3
    for r in data["results"]:
        assert r["steps"] == 2 and not r["reached_early"]
        for key in ("sec_per_step", "min_sec", "first_step_sec", "peak_mb"):
            assert math.isfinite(r[key]) and r[key] >= 0, key
    assert [r["frame_sec"] is not None for r in data["results"]] == [False, True, False]
    assert 0 < data["results"][1]["frame_sec"] < math.inf


def test_bench_masked_cases_in_process(toy):
    res = run_bench(ModelSpec(model="toy"), threads=(1,), masks=(True,), precisions=("fp32",), steps=1,
                    frames=0, subprocesses=False)
    assert [r.case for r in res] == [BenchCase("authors", 1, True), BenchCase("dragkit", 1, True, "fp32", False)]
    assert all(math.isfinite(r.sec_per_step) and r.sec_per_step > 0 for r in res)
    table = format_table(res)
    assert table.count("\n") == 3 and " yes " in table and "x " in table


@pytest.mark.parametrize("argv, msg", [
    (["--res", "100"], "--res must be a power of two"),
    (["--steps", "0"], "--steps must be between 1 and 10000"),
    (["--threads", "0"], "thread counts between 1 and 256"),
    (["--precision", "fp16"], "comma list of fp32, bf16"),
    (["--model", "no-such-model"], "no-such-model"),
])
def test_bench_bad_arguments_are_one_line_errors(argv, msg, capsys):
    try:
        rc = main(["bench", *argv])
    except SystemExit as exc:  # argparse's errors exit 2
        rc = exc.code
    assert rc in (1, 2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dragkit: error:") and msg in err
