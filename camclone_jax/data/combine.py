"""Combine CameraClone CSVs from several dataset folders into one CSV that training and precompute read as one.

    python -m camclone_jax.data.combine data/extra/train_rotation.csv data/extra/s101/train_rotation.csv \
        data/extra/s102/train_rotation.csv ...

Each CSV's video paths are relative to its own folder (`camclone_jax.train.data.camclone_index`); the output
rewrites them relative to the output's folder, so the rows keep pointing at the same files. Every referenced
video must exist: a missing one is an error that names the CSV and the row, not a row skipped later in training.
The synthetic generator renders one seed per call, so a bigger training set is several seeds combined (README
"A small trained model").
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from camclone_jax.train.data import CAMCLONE_COLUMNS, read_csv

PATH_COLUMNS = ("video_path", "ref_video_path", "content_video_path")


def combine(out: str | Path, inputs: list[str | Path]) -> int:
    """Writes the rows of `inputs` to `out` with their video paths relative to `out`'s folder -> row count."""
    out = Path(out).absolute()
    rows = []
    for path in map(Path, inputs):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such CSV")
        root = path.absolute().parent
        for i, row in enumerate(read_csv(path, CAMCLONE_COLUMNS), start=2):  # line 1 is the header
            for column in PATH_COLUMNS:
                video = root / row[column]
                if not video.is_file():
                    raise FileNotFoundError(f"{path} line {i}: {column} {row[column]!r} does not exist ({video})")
                row[column] = Path(os.path.relpath(video, out.parent)).as_posix()
            rows.append({k: row[k] for k in CAMCLONE_COLUMNS})
    if not rows:
        raise ValueError(f"no rows in {[str(p) for p in inputs]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CAMCLONE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the CSV to write (its folder is where the rewritten paths start)")
    parser.add_argument("inputs", nargs="+", help="CameraClone CSVs (video_path, caption, ref_video_path, "
                                                   "content_video_path; paths relative to each CSV's folder)")
    args = parser.parse_args(argv)
    try:
        n = combine(args.out, args.inputs)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {n} rows from {len(args.inputs)} CSV(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
