"""How many CPU threads a stage of small operations runs on.

Small operations (the state track's MLP on batches of 64, planning in states on a few hundred
candidates) gain little from a second thread on an idle machine, and on a shared one torch's
threads wait on each other at every operation while another process holds a core: measured on a
2-core CPU with one other busy process, the state-track stage fell from 8.7 to 2.1 steps/s on two
threads and kept 8.6 on one; planning in states went from 0.08 to 0.33 s per step on two, 0.10 on
one (docs/reliability.md). Stages of large operations (the denoiser) keep every thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

SMALL_OPS_THREADS = 1


@contextmanager
def small_ops() -> Iterator[None]:
    """Runs the block on SMALL_OPS_THREADS torch threads (never more than set before), then restores them."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(SMALL_OPS_THREADS, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)
