"""Shared by the model tests: tiny networks run on one torch thread.

They gain nothing from a second thread, and on a machine that other processes keep busy, OpenMP's
waits between threads turn a 0.2 s training run into 10 s. Import the fixture into a test module
(``from torch_threads import one_torch_thread  # noqa: F401``) to use it there.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
