"""Test-session set-up.

- Without a CUDA device, Triton kernels run on CPU tensors under Triton's interpreter, which
  must be switched on before Triton is first imported: set ``TRITON_INTERPRET=1`` here.
- Tests marked ``gpu`` are skipped, with the reason, when no CUDA device is present.
"""

from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for training-heavy tests: the CI machine has 2 shared cores, and
    two OpenMP threads wait on each other whenever another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
