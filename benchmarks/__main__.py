"""One entry point for the JAX-vs-PyTorch benchmarks: DiT forward, train step, VAE and full sampling.

    python -m benchmarks [--suites forward,train,vae,sampling] [--sizes tiny,medium,full] [--repeats N]
                         [--threads N] [--peak-tflops X] [--steps N] [--task t2v|camclone] [--out FILE.md]

Runs the chosen suites one after another. Each suite is its own module (`python -m benchmarks.dit_forward`, ...)
and, as when run alone, measures every (framework, size) pair in its own subprocess, JAX and PyTorch (diffusers,
SDPA) in the same run, and prints a markdown table with wall time, peak memory, achieved TFLOP/s and MFU (against
`--peak-tflops`, else the device's known fp32 peak; "–" on CPU without `--peak-tflops`).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import re
import shlex
import sys
import traceback

# name -> (module, what it measures)
SUITES = {
    "forward": ("benchmarks.dit_forward", "DiT forward (WanDiT vs diffusers WanTransformer3DModel)"),
    "train": ("benchmarks.train_step", "DiT train step (jit_train_step vs diffusers + torch.optim.AdamW)"),
    "vae": ("benchmarks.vae", "VAE encode / decode (WanVAE vs diffusers AutoencoderKLWan)"),
    "sampling": ("benchmarks.sampling", "full sampling: CFG denoising loop + VAE decode"),
}


def _suite_sizes() -> dict[str, dict]:
    return {name: importlib.import_module(module).SIZES for name, (module, _) in SUITES.items()}


def _epilog() -> str:
    lines = ["suites and their sizes (a size that a suite does not define is skipped, with a note):"]
    for name, sizes in _suite_sizes().items():
        lines.append(f"  {name:9s} {SUITES[name][1]}: {', '.join(sizes)}")
    lines += ["", "Without --sizes / --repeats each suite uses its own defaults (see `python -m benchmarks.<module> "
              "--help`).", "--steps and --task apply to the sampling suite only (--steps default: 4 for tiny and "
              "medium, 50 for full, as upstream samples with 50).", "",
              "CPU timings are only meaningful on an otherwise idle machine: every table notes the load average.",
              "With --out, the tables are appended under a dated heading naming the device and the command, ready "
              "to paste into benchmarks/RESULTS.md."]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0] + " " +
                                " ".join(__doc__.split("\n\n")[2].split()),
                                epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suites", default=",".join(SUITES),
                   help=f"comma-separated subset of {','.join(SUITES)}, run in that order (default: all)")
    p.add_argument("--sizes", default=None,
                   help="comma-separated sizes, e.g. tiny,medium,full; each suite runs those it defines "
                        "(default: each suite's own default sizes)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls (steps, samples) per pair after one warm-up (default: each suite's, 3)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="cores each worker is pinned to; also torch.set_num_threads (default: all, %(default)s)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak in TFLOP/s for the MFU columns (default: the JAX device's known fp32 peak, "
                        "or $CAMCLONE_PEAK_TFLOPS; none on CPU)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling suite: denoising steps per sample (default 4 for the CPU sizes, 50 for full; "
                        "upstream uses 50)")
    p.add_argument("--task", choices=("t2v", "camclone"), default="t2v",
                   help="sampling suite: t2v, or CamCloneMaster's V2V layout (i2v DiT on [target | reference | "
                        "content] frames) (default %(default)s)")
    p.add_argument("--out", metavar="FILE.md", help="also append the tables to this markdown file")
    return p


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    suites = [s for s in args.suites.split(",") if s]
    unknown = [s for s in suites if s not in SUITES]
    if unknown or not suites:
        p.error(f"unknown suites {unknown}; known: {list(SUITES)}")
    sizes = None if args.sizes is None else [s for s in args.sizes.split(",") if s]
    all_sizes = _suite_sizes()
    if sizes is not None:
        undefined = sorted(set(sizes) - {s for name in suites for s in all_sizes[name]})
        if undefined:
            p.error(f"sizes {undefined} are defined by none of the suites {suites}")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")

    reports, failed = [], []
    for name in suites:
        module, what = SUITES[name]
        argv_suite = ["--threads", str(args.threads)]
        if sizes is not None:
            chosen = [s for s in sizes if s in all_sizes[name]]
            skipped = [s for s in sizes if s not in all_sizes[name]]
            if skipped:
                note = (f"_{name}: size(s) {', '.join(skipped)} skipped: not defined by this suite (it has "
                        f"{', '.join(all_sizes[name])})._\n")
                print(note, flush=True)
                reports.append(note)
            if not chosen:
                continue
            argv_suite += ["--sizes", ",".join(chosen)]
        if args.repeats is not None:
            argv_suite += ["--repeats", str(args.repeats)]
        if args.peak_tflops is not None:
            argv_suite += ["--peak-tflops", str(args.peak_tflops)]
        if name == "sampling":
            argv_suite += ["--task", args.task] + ([] if args.steps is None else ["--steps", str(args.steps)])
        print(f"[benchmarks] {name}: {what}: python -m {module} {shlex.join(argv_suite)}", file=sys.stderr,
              flush=True)
        try:
            reports.append(importlib.import_module(module).main(argv_suite))
        except Exception:  # one suite failing (e.g. out of memory at a big size) should not lose the others
            traceback.print_exc()
            failed.append(name)
            reports.append(f"_{name}: failed (see stderr)._\n")
        print(flush=True)

    if args.out:
        devices = sorted({m for r in reports for m in re.findall(r"^Device: ([^;]+);", r, re.M)})
        command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
        with open(args.out, "a") as f:
            f.write(f"\n## {datetime.date.today()} — {', '.join(suites)}, {' / '.join(devices) or 'unknown device'}"
                    f"\n\n`{command}`\n\n" + "\n".join(r.replace("### ", "#### ", 1) for r in reports))
        print(f"[benchmarks] appended {len(reports)} report(s) to {args.out}", file=sys.stderr)
    if failed:
        print(f"[benchmarks] failed suites: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
