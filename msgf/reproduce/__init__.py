"""Reproduce the paper's claims end to end on the built-in scenes (issue 7): `msgf reproduce`.

- plan: the presets ("tiny", "cpu") as data: which models, budgets, baselines;
- runs: train or reuse each GFNet in WORKDIR/<run>/ (a done marker; resumable);
- static: the static baselines (whole scene at several input sizes);
- parallel: `--jobs N`, the models above trained N at a time in separate processes;
- measure: threshold sweeps, ablations, throughput;
- claims: the issue's claims as checks with paired 95% intervals and PASS/FAIL/INCONCLUSIVE verdicts;
- figures, report: the plots and OUT/synthsigns.{md,json};
- pipeline: `reproduce(preset, workdir=..., out=...)`, all of the above in order.

Names load on first use, so `msgf --help` does not import torch.
"""

from msgf._lazy import lazy_getattr

_LAZY = {
    "reproduce": "msgf.reproduce.pipeline",
    "default_workdir": "msgf.reproduce.pipeline",
    "PRESETS": "msgf.reproduce.plan",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
