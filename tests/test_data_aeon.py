"""``recur.data.aeon``: the UCR/UEA sets shipped with aeon, split, normalisation, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recur.data import aeon as aeon_data
from recur.data import (
    aeon_classification_names,
    fit_channel_norm,
    load_aeon_classification,
    load_aeon_series,
    pad_series,
)


def test_lists_only_shipped_classification_sets():
    names = aeon_classification_names()
    assert {"JapaneseVowels", "BasicMotions", "GunPoint", "PickupGestureWiimoteZ"} <= set(names)
    assert "Covid3Month" not in names and "CardanoSentiment" not in names   # regression sets
    assert not any(n.endswith("_eq") for n in names)                      # truncated variants


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown aeon dataset 'JapaneseVowel'.*"
                                         "BasicMotions.*JapaneseVowels"):
        load_aeon_classification("JapaneseVowel")


def test_japanese_vowels_official_split_and_unequal_lengths():
    ds = load_aeon_classification("japanesevowels")                     # case-insensitive
    raw = load_aeon_series("JapaneseVowels")
    assert ds.name == "JapaneseVowels" and ds.num_classes == 9 and ds.num_channels == 12
    assert (len(ds.train), len(ds.test)) == (270, 370)
    for split, series in ((ds.train, raw.train), (ds.test, raw.test)):
        lengths = [s.shape[1] for s in series]
        assert split.lengths.tolist() == lengths
        assert split.x.shape == (len(series), max(lengths), 12)
        assert split.x.dtype == torch.float32 and split.lengths.dtype == torch.int64
    assert len(set(ds.train.lengths.tolist())) > 5                      # truly unequal
    assert int(ds.train.lengths.min()) == 7 and int(ds.test.lengths.max()) == 29
    # padding is exactly zero, and the valid part is the raw series, standardised
    i = int(ds.test.lengths.argmin())
    L = int(ds.test.lengths[i])
    assert ds.test.x[i, L:].abs().sum() == 0
    back = ds.test.x[i, :L].double().numpy() * ds.std + ds.mean
    np.testing.assert_allclose(back, raw.test[i].T, rtol=1e-5, atol=1e-5)
    assert ds.classes == [str(k) for k in range(1, 10)]
    assert ds.train.y.tolist()[:3] == [0, 0, 0] and int(ds.test.y.max()) == 8


def test_normalisation_statistics_come_from_the_train_split():
    ds = load_aeon_classification("JapaneseVowels")
    mask = torch.arange(ds.train.x.shape[1])[None, :] < ds.train.lengths[:, None]
    valid = ds.train.x[mask].double()                                    # (sum T_i, C)
    torch.testing.assert_close(valid.mean(0), torch.zeros(12, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.std(0, correction=0), torch.ones(12, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    test_mask = torch.arange(ds.test.x.shape[1])[None, :] < ds.test.lengths[:, None]
    assert ds.test.x[test_mask].double().mean(0).abs().max() > 1e-3     # not refitted on test


def _fake_problem(monkeypatch, test_offset: float) -> None:
    """Serve a synthetic 2-channel problem of unequal lengths through the loader."""
    rng = np.random.default_rng(0)
    train = [rng.normal(5.0, 2.0, size=(2, n)) for n in (3, 7, 5)]
    test = [rng.normal(5.0, 2.0, size=(2, n)) + test_offset for n in (9, 1)]
    files = {"tr.ts": (train, np.array(["a", "b", "a"])), "te.ts": (test, np.array(["b", "a"]))}
    monkeypatch.setattr(aeon_data, "_shipped", lambda: {"Fake": ("tr.ts", "te.ts")})
    monkeypatch.setattr(aeon_data, "_read_ts",
                        lambda path: ([s.copy() for s in files[path][0]], files[path][1],
                                      ["a", "b"]))


def test_test_values_never_change_the_train_tensors_or_the_statistics(monkeypatch):
    _fake_problem(monkeypatch, test_offset=0.0)
    a = load_aeon_classification("Fake")
    _fake_problem(monkeypatch, test_offset=1000.0)
    b = load_aeon_classification("Fake")
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    assert torch.equal(a.train.x, b.train.x)
    assert not torch.allclose(a.test.x, b.test.x)
    assert a.test.lengths.tolist() == [9, 1] and a.train.lengths.tolist() == [3, 7, 5]
    assert a.train.y.tolist() == [0, 1, 0]


def test_labels_outside_the_declared_classes_are_an_error(monkeypatch):
    _fake_problem(monkeypatch, 0.0)
    monkeypatch.setattr(aeon_data, "_read_ts",
                        lambda path: ([np.zeros((1, 4))], np.array(["zebra"]), ["a", "b"]))
    with pytest.raises(ValueError, match=r"labels \['zebra'\] are not among"):
        load_aeon_classification("Fake")


def test_missing_values_inside_a_series_are_an_error(monkeypatch):
    _fake_problem(monkeypatch, 0.0)
    bad = np.ones((1, 5))
    bad[0, 2] = np.nan
    monkeypatch.setattr(aeon_data, "_read_ts",
                        lambda path: ([bad.copy()], np.array(["a"]), ["a"]))
    with pytest.raises(ValueError, match="Fake train series 0 has missing values"):
        load_aeon_classification("Fake")


def test_fit_channel_norm_and_pad_series():
    series = [np.array([[1.0, 3.0], [0.0, 0.0]]), np.array([[5.0], [0.0]])]
    mean, std = fit_channel_norm(series)
    np.testing.assert_allclose(mean, [3.0, 0.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3), 1.0])             # constant channel → 1
    x, lengths = pad_series(series, mean, std)
    assert x.shape == (2, 2, 2) and lengths.tolist() == [2, 1]
    assert x[1, 1].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(x[0, :, 0].numpy(), (np.array([1.0, 3.0]) - 3) / std[0],
                               rtol=1e-6)


def test_univariate_unequal_length_set_loads():
    ds = load_aeon_classification("PickupGestureWiimoteZ")
    assert ds.num_channels == 1 and ds.num_classes == 10
    assert int(ds.train.lengths.min()) < int(ds.train.lengths.max())
    assert ds.train.x.shape[1] == int(ds.train.lengths.max())
