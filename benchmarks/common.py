"""Shared plumbing of the JAX-vs-PyTorch benchmarks: one subprocess worker per (framework, size) that prints one
JSON line, the common command line, RSS probes, the CPU name, the version string and MFU.

MFU = achieved FLOP/s / the device's peak. The peak is `--peak-tflops` when given, else the JAX worker's
`camclone_jax.flops.peak_flops_per_second(device, "float32")` (the benchmarks run fp32: TF32 tensor cores on
NVIDIA; the environment variable CAMCLONE_PEAK_TFLOPS overrides it), which the worker reports in its JSON as
`peak_flops`. CPUs have no known peak, so MFU prints "–" there unless `--peak-tflops` is given. Both frameworks
run on the same device, so the torch MFU uses the same peak.

Workers run in their own process so that imports, allocator caches and XLA compilation of one measurement never
pollute the timing or the memory of another.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time


def rss_kib(field: str) -> int:
    """A /proc/self/status memory field in KiB: "VmRSS" (now) or "VmHWM" (peak since start or last reset)."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def reset_peak_rss() -> bool:
    """Resets VmHWM (Linux >= 4.0) so that the next peak covers the timed calls only."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = re.search(r"model name\s*:\s*(.+)", f.read()).group(1).strip()
    except (OSError, AttributeError):
        name = "unknown CPU"
    return f"{name} ({len(os.sched_getaffinity(0))} cores used)"


def versions() -> str:
    from importlib.metadata import version
    return ", ".join(f"{p} {version(p)}" for p in ("jax", "jaxlib", "flax", "torch", "diffusers"))


def seconds(r: dict) -> str:
    """"median (min)" of a worker result's timed calls; four decimals below 0.1 s (tiny sizes take ~2 ms)."""
    digits = 4 if r["median_s"] < 0.1 else 3
    return f"{r['median_s']:.{digits}f} ({min(r['times']):.{digits}f})"


def add_common_args(p: argparse.ArgumentParser, sizes: dict, default_sizes: str, repeats_help: str) -> None:
    p.add_argument("--sizes", default=default_sizes,
                   help=f"comma-separated subset of {','.join(sizes)} (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help=repeats_help)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="cores each worker is pinned to; also torch.set_num_threads (default: all, %(default)s)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak in TFLOP/s for the MFU columns (default: the known fp32 peak of the JAX device "
                        "from camclone_jax.flops.peak_flops_per_second, or $CAMCLONE_PEAK_TFLOPS; none on CPU, "
                        "where MFU prints '–')")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)


def run_worker_and_print(args, run_worker) -> None:
    """Worker side: pins the process to --threads cores, runs, prints the one JSON line the parent reads. The
    JAX worker's line also carries `peak_flops` (FLOP/s or None), the peak that the MFU columns divide by."""
    # Must precede the jax / torch imports: both size their thread pools from the affinity mask.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
    result = run_worker(args.worker, args.size, args.repeats, args.threads)
    if args.worker == "jax":
        from camclone_jax.flops import peak_flops_per_second
        result["peak_flops"] = peak_flops_per_second(None, "float32", override_tflops=args.peak_tflops)
    print(json.dumps(result))


def peak_flops(args, jax_results) -> float | None:
    """The peak (FLOP/s) for the MFU columns: --peak-tflops, else what the JAX workers reported (None: unknown)."""
    if args.peak_tflops is not None:
        return args.peak_tflops * 1e12
    return next((r["peak_flops"] for r in jax_results if r.get("peak_flops")), None)


def mfu(flops: float | None, secs: float, peak: float | None) -> str:
    """Model FLOP utilisation in percent, "–" when the peak or the FLOP count is unknown."""
    if not peak or not flops:
        return "–"
    return f"{100 * flops / secs / peak:.2f} %"


def tflops(flops: float | None, secs: float) -> str:
    return "–" if not flops else f"{flops / secs / 1e12:.3f}"


def peak_note(peak: float | None) -> str:
    if peak is None:
        return ("MFU: – (no known peak for this device; pass --peak-tflops or set CAMCLONE_PEAK_TFLOPS)")
    return f"MFU against a peak of {peak / 1e12:.1f} TFLOP/s (fp32 matmul rate; --peak-tflops overrides)"


def parse_sizes(p: argparse.ArgumentParser, text: str, sizes: dict) -> list[str]:
    chosen = [s for s in text.split(",") if s]
    unknown = set(chosen) - set(sizes)
    if unknown:
        p.error(f"unknown sizes {sorted(unknown)}; known: {list(sizes)}")
    return chosen


def spawn(module: str, framework: str, size: str, repeats: int, threads: int, *,
          peak_tflops: float | None = None, extra: tuple[str, ...] = ()) -> dict:
    """Runs `python -m module --worker framework --size size ... [extra]` and returns its JSON line."""
    cmd = [sys.executable, "-m", module, "--worker", framework, "--size", size, "--repeats", str(repeats),
           "--threads", str(threads), *(() if peak_tflops is None else ("--peak-tflops", str(peak_tflops))),
           *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_note(loads: list[float]) -> str:
    # Other processes on the same cores skew CPU timings (PyTorch's OpenMP barriers suffer most), so say so.
    return (f"1-min load average sampled before/after each size: {', '.join(f'{x:.1f}' for x in loads)} (our "
            f"worker alone accounts for up to --threads; more means other processes shared the cores)")


def emit(heading: str, note: str, table: str) -> str:
    """Prints a suite's report (heading, note paragraph, table) and returns it as one markdown string."""
    text = f"{heading}\n\n{note}\n\n{table}\n"
    print(text, end="", flush=True)
    return text


# Calls shorter than this are repeated beyond `--repeats` until their total reaches it: a median of three
# 2-ms calls measures scheduler noise, not the model.
MIN_TIMED_SECONDS = 2.0
MAX_TIMED_CALLS = 1000


def torch_device_hooks(dev, cpu_sync=lambda out: out):
    """(sync, device description, peak bytes fn, peak reset fn) of the torch device `dev`: on CUDA the sync waits
    for the queue and the peak is the allocator's; on a CPU `cpu_sync` forces a result that is computed lazily
    (a loss tensor is read) and the peak is None (the worker's RSS measures memory instead)."""
    import torch

    if dev.type == "cuda":
        return (lambda out: torch.cuda.synchronize(), torch.cuda.get_device_name(), torch.cuda.max_memory_allocated,
                torch.cuda.reset_peak_memory_stats)
    return cpu_sync, cpu_name(), (lambda: None), (lambda: None)


def measure(build, framework: str, size: str, repeats: int, threads: int) -> dict:
    """Worker body shared by the suites: `build()` -> (call, sync, device description, device peak bytes fn);
    one warm-up call (traces and compiles for JAX), VmHWM reset, then `repeats` timed calls, or more while
    they add up to less than MIN_TIMED_SECONDS."""
    t0 = time.perf_counter()
    call, sync, desc, device_peak = build()
    build_s = time.perf_counter() - t0
    rss_built = rss_kib("VmRSS")
    t0 = time.perf_counter()
    sync(call())
    warmup_s = time.perf_counter() - t0
    hwm_reset = reset_peak_rss()
    times = []
    while len(times) < repeats or (sum(times) < MIN_TIMED_SECONDS and len(times) < MAX_TIMED_CALLS):
        t0 = time.perf_counter()
        sync(call())
        times.append(time.perf_counter() - t0)
    return dict(framework=framework, size=size, build_s=build_s, warmup_s=warmup_s, times=times,
                median_s=statistics.median(times), rss_built_kib=rss_built, peak_rss_kib=rss_kib("VmHWM"),
                hwm_reset=hwm_reset, device_peak_bytes=device_peak(), device=desc, threads=threads)


def memory_gib(r: dict) -> str:
    """Peak memory cell: device bytes where measured, else peak RSS (and its growth over the built model)."""
    if r["device_peak_bytes"] is not None:
        return f"{r['device_peak_bytes'] / 2**30:.2f} (device)"
    return f"{r['peak_rss_kib'] / 2**20:.2f} ({(r['peak_rss_kib'] - r['rss_built_kib']) / 2**20:+.2f})"


def comparison_cells(flops: float, tr: dict, jr: dict, peak: float | None) -> str:
    """The torch-vs-jax cells every DiT table ends with: times, ratio, TFLOP/s, MFU, compile, memory."""
    return (f"{seconds(tr)} | {seconds(jr)} | **{jr['median_s'] / tr['median_s']:.2f}** | "
            f"{flops / tr['median_s'] / 1e12:.3f} | {flops / jr['median_s'] / 1e12:.3f} | "
            f"{mfu(flops, tr['median_s'], peak)} | {mfu(flops, jr['median_s'], peak)} | "
            f"{jr['warmup_s'] - min(jr['times']):.1f} | {memory_gib(tr)} | {memory_gib(jr)} |")


def _times(r: dict) -> str:
    times = r["times"]
    return str(times) if len(times) <= 5 else f"{len(times)} calls, median {r['median_s']:.4f} min {min(times):.4f}"


def run_pairs(module: str, sizes: list[str], args) -> tuple[list[tuple[str, dict, dict]], list[float], list[str]]:
    """Parent side: a torch and a jax worker per size -> (rows (size, torch, jax), load averages sampled
    around the sizes, the devices the workers reported)."""
    loads, rows = [os.getloadavg()[0]], []
    for size in sizes:
        tr, jr = (spawn(module, fw, size, args.repeats, args.threads, peak_tflops=args.peak_tflops)
                  for fw in ("torch", "jax"))
        print(f"[{size}] torch {_times(tr)}  jax {_times(jr)} (warm-up torch {tr['warmup_s']:.1f} s, "
              f"jax {jr['warmup_s']:.1f} s)", file=sys.stderr)
        rows.append((size, tr, jr))
        loads.append(os.getloadavg()[0])
    return rows, loads, sorted({r["device"] for _, *pair in rows for r in pair})
