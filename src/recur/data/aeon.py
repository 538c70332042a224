"""UCR/UEA time-series classification datasets that ship inside the ``aeon`` package.

Only the problems whose ``.ts`` files are in aeon's own package data are offered, so nothing is
downloaded: today that is e.g. ``JapaneseVowels`` (multivariate, unequal length),
``BasicMotions`` (multivariate), ``GunPoint``, ``ItalyPowerDemand``, ``ArrowHead``, ``OSULeaf``,
``PickupGestureWiimoteZ`` (univariate, unequal length); :func:`aeon_classification_names` lists
what the installed aeon has.

Each problem is returned with its official train/test split, per-channel normalisation fitted
on the train series only (mean and std over every valid time step of every train series),
padded to the longest series of each split, with the true lengths beside::

    ds = load_aeon_classification("JapaneseVowels")
    ds.train.x        # [N_train, T_train, C] float32, zero past each row's length
    ds.train.lengths  # [N_train] int64, in [1, T_train]
    ds.train.y        # [N_train] int64 class indices into ds.classes

The padded tensors go straight into ``recur.LSTM(..., batch_first=True)(x, lengths=lengths)``.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "AeonSeries",
    "ClassificationData",
    "SequenceSplit",
    "aeon_classification_names",
    "fit_channel_norm",
    "load_aeon_classification",
    "load_aeon_series",
    "pad_series",
]

log = logging.getLogger(__name__)


@dataclass
class SequenceSplit:
    """One split of a sequence classification problem.

    Attributes:
        x: ``[N, T, C]`` float32, padded with zeros past each row's length.
        lengths: ``[N]`` int64, number of valid steps per row (``1 <= lengths <= T``).
        y: ``[N]`` int64 class indices.
    """

    x: Tensor
    lengths: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class ClassificationData:
    """A classification problem with its official split and the train-fitted normalisation.

    Attributes:
        name: the dataset's name as aeon ships it.
        train, test: the official splits.
        classes: class label strings; ``y`` indexes into this list.
        mean, std: ``[C]`` float64 per-channel statistics of the train split (identity if the
            data was loaded with ``normalize=False``).
    """

    name: str
    train: SequenceSplit
    test: SequenceSplit
    classes: list[str]
    mean: np.ndarray
    std: np.ndarray

    @property
    def num_channels(self) -> int:
        return self.train.x.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _aeon_data_dir() -> str:
    with warnings.catch_warnings():
        # aeon may warn about optional soft dependencies on import; nothing to act on here.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        import aeon.datasets
    return os.path.join(os.path.dirname(aeon.datasets.__file__), "data")


def _is_classification(path: str) -> bool:
    """True if the ``.ts`` header declares ``@classLabel true``."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip().lower()
            if line.startswith("@classlabel"):
                return line.split()[1:2] == ["true"]
            if line.startswith("@data"):
                return False
    return False


@lru_cache(maxsize=1)
def _shipped() -> dict[str, tuple[str, str]]:
    root = _aeon_data_dir()
    found: dict[str, tuple[str, str]] = {}
    for folder in sorted(os.listdir(root)):
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            continue
        for fname in os.listdir(d):
            m = re.fullmatch(r"(.+)_TRAIN\.ts", fname)
            if not m or m.group(1).endswith("_eq") or m.group(1) != folder:
                continue
            train, test = os.path.join(d, fname), os.path.join(d, f"{m.group(1)}_TEST.ts")
            if os.path.exists(test) and _is_classification(train):
                found[m.group(1)] = (train, test)
    return found


def aeon_classification_names() -> list[str]:
    """Names of the classification problems shipped in the installed aeon's package data."""
    return sorted(_shipped())


def _read_ts(path: str) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Read one ``.ts`` file → (list of ``[C, T_i]`` float64 arrays, labels, class_values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        from aeon.datasets import load_from_ts_file
        X, y, meta = load_from_ts_file(path, return_meta_data=True)
    series = [np.asarray(s, dtype=np.float64) for s in X]  # ndarray [N,C,T] or list of [C,T_i]
    return series, np.asarray(y).astype(str), [str(c) for c in meta.get("class_values") or []]


def fit_channel_norm(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over every time step of every series.

    Args:
        series: list of ``[C, T_i]`` arrays (lengths may differ).

    Returns:
        ``mean, std``: ``[C]`` float64; a constant channel gets std 1 so it maps to zero.
    """
    cat = np.concatenate(series, axis=1)  # (C, sum T_i)
    mean = cat.mean(axis=1)
    std = cat.std(axis=1)
    std[~(std > 1e-12)] = 1.0
    return mean, std


def pad_series(series: list[np.ndarray], mean: np.ndarray | None = None,
               std: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """Normalise (optionally) and pad a list of ``[C, T_i]`` series to one batch.

    Returns:
        ``x: [N, T_max, C]`` float32, zero past each row's length; ``lengths: [N]`` int64.
    """
    lengths = [s.shape[1] for s in series]
    if min(lengths) < 1:
        raise ValueError("a series has no time steps; lengths must be at least 1")
    C, T = series[0].shape[0], max(lengths)
    x = np.zeros((len(series), T, C), dtype=np.float32)
    for i, s in enumerate(series):
        if mean is not None:
            s = (s - mean[:, None]) / std[:, None]
        x[i, : s.shape[1]] = s.T
    return torch.from_numpy(x), torch.tensor(lengths, dtype=torch.int64)


def _trim_trailing_nan(s: np.ndarray) -> np.ndarray:
    """aeon pads some unequal-length series with trailing NaN; cut those steps off."""
    valid = ~np.isnan(s).all(axis=0)
    last = int(np.nonzero(valid)[0][-1]) + 1 if valid.any() else 0
    return s[:, :last]


@dataclass
class AeonSeries:
    """A problem as aeon ships it, before normalisation and padding.

    Attributes:
        name: the dataset's name as aeon spells it.
        train, test: lists of ``[C, T_i]`` float64 arrays (no NaN, trailing padding cut).
        y_train, y_test: label strings per series.
        classes: the declared class labels, in the file's order.
    """

    name: str
    train: list[np.ndarray]
    y_train: np.ndarray
    test: list[np.ndarray]
    y_test: np.ndarray
    classes: list[str]


def load_aeon_series(name: str) -> AeonSeries:
    """Read a classification problem shipped with aeon: official split, raw values.

    Args:
        name: dataset name, e.g. ``"JapaneseVowels"`` (case-insensitive).

    Raises:
        ValueError: unknown name (the message lists the valid ones), missing values inside a
            series, or labels that are not among the declared classes.
    """
    shipped = _shipped()
    by_lower = {k.lower(): k for k in shipped}
    key = by_lower.get(str(name).lower())
    if key is None:
        raise ValueError(f"unknown aeon dataset {name!r}; the classification datasets shipped "
                         f"with the installed aeon are: {', '.join(sorted(shipped))}")
    train_path, test_path = shipped[key]
    tr_s, tr_y, classes = _read_ts(train_path)
    te_s, te_y, _ = _read_ts(test_path)
    tr_s = [_trim_trailing_nan(s) for s in tr_s]
    te_s = [_trim_trailing_nan(s) for s in te_s]
    for split, ss in (("train", tr_s), ("test", te_s)):
        for i, s in enumerate(ss):
            if s.shape[1] == 0 or np.isnan(s).any():
                raise ValueError(f"{key} {split} series {i} has missing values; recur does not "
                                 "impute UCR/UEA data")
    if not classes:
        classes = sorted(set(tr_y))
    unknown = sorted(str(v) for v in (set(tr_y) | set(te_y)) - set(classes))
    if unknown:
        raise ValueError(f"{key}: labels {unknown} are not among the declared classes {classes}")
    return AeonSeries(key, tr_s, tr_y, te_s, te_y, list(classes))


def load_aeon_classification(name: str, *, normalize: bool = True) -> ClassificationData:
    """Load a classification problem shipped with aeon, with its official train/test split.

    Args:
        name: dataset name, e.g. ``"JapaneseVowels"`` (case-insensitive).
        normalize: standardise each channel with the mean and std of the train split.

    Returns:
        :class:`ClassificationData` with padded ``[N, T, C]`` tensors and lengths.

    Raises:
        ValueError: as :func:`load_aeon_series`.
    """
    raw = load_aeon_series(name)
    index = {c: i for i, c in enumerate(raw.classes)}
    if normalize:
        mean, std = fit_channel_norm(raw.train)
    else:
        C = raw.train[0].shape[0]
        mean, std = np.zeros(C), np.ones(C)
    splits = []
    for ss, yy in ((raw.train, raw.y_train), (raw.test, raw.y_test)):
        x, lengths = pad_series(ss, mean, std)
        y = torch.tensor([index[v] for v in yy], dtype=torch.int64)
        splits.append(SequenceSplit(x, lengths, y))
    log.info("aeon %s: %d train / %d test, %d channels, lengths %d-%d, %d classes", raw.name,
             len(splits[0]), len(splits[1]), splits[0].x.shape[-1],
             int(min(splits[0].lengths.min(), splits[1].lengths.min())),
             int(max(splits[0].lengths.max(), splits[1].lengths.max())), len(raw.classes))
    return ClassificationData(raw.name, splits[0], splits[1], raw.classes, mean, std)
