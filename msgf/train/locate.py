"""Where the objects are, as a stage-0 training signal for f_G.

The paper's f_G comes pretrained on ImageNet, so its feature map already says where objects
stand, and PPO only has to learn which of them to look at. An f_G trained here from scratch
on a class label it cannot see (the built-in scenes' glance is blind to the class by design)
learns features from which not even a linear probe recovers the sign's position (measured:
worse than predicting the mean position), so pi has nothing to read and PPO stays at random.

`Locator` is a per-cell head on f_G's own feature map, CenterNet style: per cell, a logit for
"an object's centre lies in this cell" and the centre's offset inside the cell. Trained with
`locate_loss` together with f_G, it makes f_G's map encode, per cell, what pi's 1x1 convs
read; the head is thrown away after stage 0 and only f_G keeps what it learnt. With f_G frozen
(pretrained, cpu-demo) the head is what is learnt: it fits on f_G's fixed maps (`fit_locator`)
and becomes pi's starting point (`seed_policy`). The objects are the sample's annotated boxes
plus its distractors' (every red-ringed sign of a scene), because the glance cannot tell them
apart and the focus step is what reads them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Locator(nn.Module):
    """(N, C, h, w) feature map -> (N, 3, h, w): presence logit, row and column offset logits.

    One 1x1 conv, or with `hidden` > 0 two with a ReLU between, the first without a bias and
    `kernel` wide: the form of pi's spatial head (reduce, ReLU, cell score and offset), so that
    `seed_policy` copies either into pi exactly.
    """

    def __init__(self, channels: int, hidden: int = 0, kernel: int = 1):
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden: expected >= 0 channels, got {hidden}")
        if kernel < 1 or kernel % 2 == 0 or (kernel > 1 and not hidden):
            raise ValueError(f"kernel: expected an odd side, and 1 without a hidden layer, got {kernel}")
        self.hidden = nn.Conv2d(channels, hidden, kernel_size=kernel, padding=kernel // 2, bias=False) \
            if hidden else None
        self.head = nn.Conv2d(hidden or channels, 3, kernel_size=1)

    def forward(self, feature_map: Tensor) -> Tensor:
        if self.hidden is not None:
            feature_map = torch.relu(self.hidden(feature_map))
        return self.head(feature_map)


def locate_targets(boxes: list[Tensor], image_hw: tuple[int, int], grid_hw: tuple[int, int]):
    """presence (N, h, w) in {0, 1} and offsets (N, 2, h, w) in [0, 1) of box centres per cell.

    Cell (i, j) covers rows [i H / h, (i + 1) H / h) of the image (the glance resizes the whole
    image, so feature cells tile it evenly). Two centres in one cell: the later box's offset.
    """
    (height, width), (rows, cols) = image_hw, grid_hw
    presence = torch.zeros((len(boxes), rows, cols))
    offsets = torch.zeros((len(boxes), 2, rows, cols))
    for b, sample_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in (tuple(float(v) for v in box) for box in sample_boxes):
            cy, cx = (y0 + y1) / 2 / height * rows, (x0 + x1) / 2 / width * cols
            i, j = min(max(int(cy), 0), rows - 1), min(max(int(cx), 0), cols - 1)
            presence[b, i, j] = 1.0
            offsets[b, 0, i, j], offsets[b, 1, i, j] = min(max(cy - i, 0.0), 1.0), min(max(cx - j, 0.0), 1.0)
    return presence, offsets


def locate_loss(prediction: Tensor, presence: Tensor, offsets: Tensor) -> Tensor:
    """BCE on presence over every cell plus L1 on the offsets of the cells holding a centre."""
    presence, offsets = presence.to(prediction.device), offsets.to(prediction.device)
    loss = F.binary_cross_entropy_with_logits(prediction[:, 0].float(), presence)
    occupied = presence.bool().unsqueeze(1).expand_as(offsets)
    if occupied.any():
        loss = loss + F.l1_loss(torch.sigmoid(prediction[:, 1:].float())[occupied], offsets[occupied])
    return loss


@torch.no_grad()
def top_cell_hits(prediction: Tensor, presence: Tensor) -> tuple[int, int]:
    """(hits, count): over samples with an object, how often the most likely cell holds one."""
    presence = presence.to(prediction.device)
    has = presence.flatten(1).any(1)
    if not has.any():
        return 0, 0
    top = prediction[:, 0].flatten(1).argmax(1)
    hits = presence.flatten(1).gather(1, top[:, None]).squeeze(1).bool()
    return int((hits & has).sum()), int(has.sum())


@torch.no_grad()
def seed_policy(policy: nn.Module, locator: Locator, sharpness: float = 4.0) -> None:
    """Make pi's "spatial" head score the glance's cells, and place the patch inside a cell,
    as the locator does.

    pi's cell score is cell_score(relu(reduce(map))), its offsets sigmoid(cell_offset(...)).
    A two-layer locator is that form: its hidden conv goes to the first reduce channels and its
    head to cell_score and cell_offset. A linear locator's three outputs z = w . map + b each go
    through a pair of reduce channels set to +w and -w, since relu(z) - relu(-z) = z. The other
    channels keep their weights but get no say in score or offset. pi then starts where f_G
    says objects are, and PPO learns from there which to look at. The scores are multiplied by
    `sharpness`: a soft-argmax of the raw logits puts the mean between a scene's several
    ringed objects. Measured offline on 300 validation scenes (two-layer locator on Lite0's
    stride-16 map of a 256 px glance, 128 px patches, three steps with inhibition of return):
    a patch found the sign within three steps in 13% of sign scenes at 1x, 48% at 4x, 71% at
    16x, 76% at 32x and 77% with a hard argmax.
    """
    if getattr(policy, "head", None) != "spatial":
        raise ValueError("seed_policy needs pi's 'spatial' head (policy_head='spatial')")
    head = locator.head
    if locator.hidden is None:  # z = w . map + b as relu(z) - relu(-z)
        weights = head.weight[:, :, 0, 0]
        hidden = torch.stack([sign * weights[k] for k in range(3) for sign in (1.0, -1.0)])[:, :, None, None]
        out = torch.zeros((3, 6), dtype=weights.dtype, device=weights.device)
        for k in range(3):
            out[k, 2 * k], out[k, 2 * k + 1] = 1.0, -1.0
    else:
        hidden, out = locator.hidden.weight, head.weight[:, :, 0, 0]
    channels, inputs = hidden.shape[:2]
    reduce = policy.reduce
    if reduce.out_channels < channels or reduce.in_channels != inputs or reduce.weight.shape[2:] != hidden.shape[2:]:
        raise ValueError(f"pi's map conv ({reduce.in_channels}->{reduce.out_channels} channels, kernel "
                         f"{tuple(reduce.weight.shape[2:])}) cannot carry the locator's {inputs}->{channels} "
                         f"channels, kernel {tuple(hidden.shape[2:])}")
    reduce.weight[:channels] = hidden
    policy.cell_score.weight.zero_()
    policy.cell_score.weight[0, :channels, 0, 0] = sharpness * out[0]
    policy.cell_score.bias.copy_(sharpness * head.bias[:1])
    policy.cell_offset.weight.zero_()
    policy.cell_offset.weight[:, :channels, 0, 0] = out[1:]
    policy.cell_offset.bias.copy_(head.bias[1:])


def fit_locator(locator: Locator, maps: Tensor, objects: list[Tensor], image_hw: tuple[int, int], *,
                epochs: int, generator: torch.Generator, lr: float = 2e-3, batch_size: int = 32,
                trunk: nn.Module | None = None, trunk_lr: float = 0.0, pooled: Tensor | None = None,
                pooled_weight: float = 0.0) -> list[float]:
    """Train `locator` on fixed feature maps (N, C, h, w) of images with these object boxes:
    Adam, `epochs` passes in a random order; the mean loss of each pass. With `trunk`, `maps`
    are the trunk's inputs and the trunk (the encoder's last blocks) trains with the locator at
    `trunk_lr`, its BatchNorm on its running statistics; with `pooled` (N, C), the trunk's
    spatial mean per image is held near it by `pooled_weight` x their mean squared difference.
    That mean is what f_C reads of the glance: free, it grew 2.8x in norm (cpu-demo, one pass)
    and stage I's classifier, trained by SGD at the rate set for the old scale, diverged.

    For a frozen f_G: its maps are computed once, and the locator's passes over them cost
    next to nothing (cpu-demo: 30 passes over 1000 glances in about 15 s), where training it
    with f_L's epochs gave it a few hundred steps (a two-layer locator on Lite0's stride-16
    map of a 256 px glance: its top cell held a ring in 55% of validation scenes after 4
    passes, 65% after 30).
    """
    if len(maps) != len(objects):
        raise ValueError(f"maps ({len(maps)}) and objects ({len(objects)}) must have one entry per image")
    if pooled is not None and (trunk is None or pooled.shape[0] != len(maps)):
        raise ValueError(f"pooled: expected one vector per image ({len(maps)}) and a trunk, got "
                         f"{tuple(pooled.shape)} and {'no ' if trunk is None else ''}trunk")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
    device = next(locator.parameters()).device
    groups = [{"params": list(locator.parameters()), "lr": lr}]
    layout, grid = torch.contiguous_format, tuple(maps.shape[-2:])
    frozen = [] if trunk is None else [p for p in trunk.parameters() if not p.requires_grad]
    if trunk is not None:
        groups.append({"params": list(trunk.parameters()), "lr": trunk_lr})
        trunk.eval().requires_grad_(True)
        with torch.no_grad():
            grid = tuple(trunk(maps[:1].to(device).float()).shape[-2:])
        if device.type == "cpu":  # depthwise blocks train about 1.5x faster channels-last on the CPU
            layout = torch.channels_last
            trunk.to(memory_format=layout)
    presence, offsets = locate_targets(objects, image_hw, grid)
    optimizer = torch.optim.Adam(groups)
    losses = []
    locator.train()
    try:
        for _ in range(epochs):
            order, total = torch.randperm(len(maps), generator=generator), 0.0
            for start in range(0, len(maps), batch_size):
                rows = order[start:start + batch_size]
                inputs = maps[rows].to(device).float()
                if trunk is not None:
                    inputs = trunk(inputs.contiguous(memory_format=layout))
                loss = locate_loss(locator(inputs), presence[rows], offsets[rows])
                if pooled is not None:
                    loss = loss + pooled_weight * F.mse_loss(inputs.mean((2, 3)), pooled[rows].to(device).float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            losses.append(total / len(maps))
    finally:
        if trunk is not None:
            trunk.to(memory_format=torch.contiguous_format)
        for parameter in frozen:  # the encoder stays frozen for whatever follows
            parameter.requires_grad_(False)
    return losses
