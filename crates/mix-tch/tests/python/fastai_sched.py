"""Oracle for mix-tch's one-cycle schedule: fastai's combine_scheds / combined_cos / SchedCos
(fastai/callback/schedule.py) restated, float32 `pcts` tensor included.

Usage: python fastai_sched.py OUT pct start middle end N
Writes OUT (safetensors): pos (N+1,) float64 = i/N, value (N+1,) float64.
"""
import math
import sys

import torch
from safetensors.torch import save_file


def sched_cos(start, end, pos):
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def combine_scheds(pcts, scheds):
    assert sum(pcts) == 1.
    pcts = torch.tensor([0] + list(pcts))
    assert torch.all(pcts >= 0)
    pcts = torch.cumsum(pcts, 0)
    pct_lim = len(pcts) - 2

    def _inner(pos):
        idx = min((pos >= pcts).nonzero().max(), pct_lim)
        actual_pos = (pos - pcts[idx]) / (pcts[idx + 1] - pcts[idx])
        return scheds[idx](actual_pos.item())
    return _inner


def combined_cos(pct, start, middle, end):
    return combine_scheds([pct, 1 - pct], [lambda p: sched_cos(start, middle, p), lambda p: sched_cos(middle, end, p)])


out, pct, start, middle, end, n = sys.argv[1], *map(float, sys.argv[2:6]), int(sys.argv[6])
f = combined_cos(pct, start, middle, end)
pos = [i / n for i in range(n + 1)]
save_file({"pos": torch.tensor(pos, dtype=torch.float64), "value": torch.tensor([f(p) for p in pos], dtype=torch.float64)}, out)
