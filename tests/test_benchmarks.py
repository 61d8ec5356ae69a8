"""`python -m benchmarks`: the suites' tables carry both frameworks' numbers and MFU columns.

The fast test runs the entry point in process with the workers faked (table layout, MFU, size skipping,
--out); the end-to-end run of real JAX and PyTorch workers takes about a minute on 2 CPU cores (four worker
processes, each importing its framework and compiling), so it is marked slow.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_spawn(module, framework, size, repeats, threads, *, peak_tflops=None, extra=()):
    """A worker's JSON line without running it: 0.5 s per torch call, 0.25 s per JAX call, CPU memory."""
    secs = 0.5 if framework == "torch" else 0.25
    result = dict(framework=framework, size=size, build_s=1.0, warmup_s=2 * secs, times=[secs] * repeats,
                  median_s=secs, rss_built_kib=2**20, peak_rss_kib=2**21, hwm_reset=True, device_peak_bytes=None,
                  device="fake CPU", threads=threads)
    if framework == "jax":
        result["peak_flops"] = None if peak_tflops is None else peak_tflops * 1e12
    if module == "benchmarks.sampling":
        from benchmarks.sampling import SIZES
        args = dict(zip(extra[::2], extra[1::2]))
        f, h, w = SIZES[size][3]
        video = [1, 4 * f - 3, 8 * h, 8 * w, 3]
        result.update(task=args["--task"], steps=int(args["--steps"]), loop_times=[secs / 2] * repeats,
                      loop_median_s=secs / 2, decode_times=[secs / 2] * repeats, decode_median_s=secs / 2,
                      vae_decode_flops=1e9 if framework == "jax" else None,
                      video_shape=video if framework == "jax" else [1, 3, *video[1:4]])
    return result


def _table_rows(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, data rows' cells) of the markdown table whose header begins with `header_start`."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return cells(lines[i]), rows


def test_entry_point_tables_with_fake_workers(monkeypatch, tmp_path, capsys):
    import benchmarks.__main__ as entry
    import benchmarks.common
    import benchmarks.sampling
    import benchmarks.train_step
    for module in (benchmarks.common, benchmarks.sampling):  # forward and train spawn through common.run_pairs
        monkeypatch.setattr(module, "spawn", _fake_spawn)
    out = tmp_path / "results.md"
    # A suite without one of the sizes skips it with a note.
    monkeypatch.setattr(benchmarks.train_step, "SIZES", {k: v for k, v in benchmarks.train_step.SIZES.items()
                                                         if k != "full"})
    rc = entry.main(["--suites", "forward,train,sampling", "--sizes", "tiny,full", "--repeats", "1", "--steps", "1",
                     "--peak-tflops", "0.001", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "train: size(s) full skipped" in printed
    for start, size_rows in (("| size | layers/dim/heads | latent FxHxW | tokens | GFLOP |", 2),
                             ("| size | layers/dim/heads | latent FxHxW | tokens | step GFLOP |", 1),
                             ("| size | task |", 2)):
        header, rows = _table_rows(printed, start)
        assert {"torch MFU", "jax MFU", "torch TFLOP/s", "jax TFLOP/s"} <= set(header)
        assert len(rows) == size_rows
        for row in rows:
            cell = dict(zip(header, row))
            assert all(re.fullmatch(r"\d+\.\d+ %", cell[c]) for c in ("torch MFU", "jax MFU")), cell
            # JAX is twice as fast in the fake: twice the FLOP/s, twice the MFU.
            assert float(cell["jax MFU"][:-2]) == pytest.approx(2 * float(cell["torch MFU"][:-2]), rel=0.01)
    _, rows = _table_rows(printed, "| size | task |")
    assert rows[0][:2] == ["tiny", "t2v"] and rows[1][:2] == ["full", "t2v"]
    saved = out.read_text()
    assert re.search(r"^## \d{4}-\d\d-\d\d — forward, train, sampling, fake CPU$", saved, re.M)
    assert saved.count("| size |") == 3 and "#### Full sampling" in saved


def test_mfu_is_a_dash_without_a_peak():
    from benchmarks.common import mfu
    assert mfu(1e12, 1.0, None) == "–"
    assert mfu(1e12, 1.0, 2e12) == "50.00 %"


@pytest.mark.slow
def test_entry_point_end_to_end():
    """Real workers, tiny sizes: both frameworks' times and MFU (with --peak-tflops, as the CPU has no known peak)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--suites", "forward,sampling", "--sizes", "tiny",
                           "--repeats", "1", "--steps", "1", "--threads", "1", "--peak-tflops", "0.1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for start, columns in (("| size | layers/dim/heads |", ("torch s med (min)", "jax s med (min)")),
                           ("| size | task |", ("torch s/sample", "jax s/sample"))):
        header, rows = _table_rows(proc.stdout, start)
        assert len(rows) == 1
        cell = dict(zip(header, rows[0]))
        for c in columns:
            assert float(cell[c].split()[0]) > 0, cell
        assert all(cell[c].endswith(" %") for c in ("torch MFU", "jax MFU")), cell
