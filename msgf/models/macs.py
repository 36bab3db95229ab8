"""Per-step MACs of a GFNet, counted by running its own step code under FlopCounterMode.

The count runs on a meta-device copy (shapes only: instant, and the real model's BatchNorm
statistics and device are untouched). Inputs bypass the crop op, whose resampling is not
counted by convention (design.md section 4); everything else a step runs is counted.
"""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

COMPONENTS = ("encoder", "classifier", "policy")
# Which submodule of the model each component's FLOPs are recorded under.
_MODULES = {"encoder": ("global_encoder", "local_encoder"), "classifier": ("classifier",), "policy": ("policy",)}


def measure(model) -> list[dict]:
    """[{"glance": parts}, {size: parts, ...} for t = 2..T], parts = {component: MACs}."""
    cfg = model.config
    meta = copy.deepcopy(model).to("meta").eval()
    meta._macs = None
    glance_input = torch.zeros((1, 3, cfg.glance_size, cfg.glance_size), device="meta")
    glance_parts, glance_state = _count(meta, lambda: meta._glance_step(glance_input))
    steps: list[dict] = [{"glance": glance_parts}] + [{} for _ in range(cfg.T - 1)]
    for k, size in enumerate(cfg.patch_sizes):
        state = glance_state
        for t in range(2, cfg.T + 1):
            steps[t - 1][size], state = _count(meta, lambda s=state, k=k, size=size: _focus(meta, s, k, size))
    return steps


def _focus(meta, state, k: int, size: int):
    next_index = torch.full((1,), k, dtype=torch.int64, device="meta")
    proposal = meta.propose(state, size)
    side = meta.config.input_side(size)  # f_L runs at its input side (zoom), not the patch's
    patch = torch.zeros((1, 3, side, side), device="meta")
    return meta._focus_step(state, [patch], [torch.zeros(1, dtype=torch.int64)], next_index, proposal.hidden)


def _count(model, run):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = run()
    flops = counter.get_flop_counts()
    # Steps call the submodules directly, so each is tracked as a root under its class name.
    roots = {name: {type(getattr(model, m)).__name__ for m in mods} for name, mods in _MODULES.items()}
    parts = {name: sum(sum(flops.get(cls, {}).values()) for cls in classes) for name, classes in roots.items()}
    total = sum(flops.get("Global", {}).values())
    if sum(parts.values()) != total:
        raise RuntimeError(f"MACs outside encoder/classifier/policy: {total // 2} counted, parts {parts}")
    return {name: value // 2 for name, value in parts.items()}, out


def validate(steps, config) -> list[dict]:
    """A cached table (e.g. from a checkpoint) checked against the model config it claims to fit."""
    expected_keys = [{"glance"}] + [set(config.patch_sizes)] * (config.T - 1)
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps) or \
            [set(s) for s in steps] != expected_keys:
        raise ValueError("MACs table does not match the model's T and patch sizes")
    for per_size in steps:
        for parts in per_size.values():
            if not isinstance(parts, dict) or set(parts) != set(COMPONENTS) or \
                    not all(isinstance(v, int) and v >= 0 for v in parts.values()):
                raise ValueError(f"MACs table entries must map {COMPONENTS} to non-negative ints")
    return [{key: dict(parts) for key, parts in per_size.items()} for per_size in steps]
