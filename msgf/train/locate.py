"""Where the objects are, as a stage-0 training signal for f_G.

The paper's f_G comes pretrained on ImageNet, so its feature map already says where objects
stand, and PPO only has to learn which of them to look at. An f_G trained here from scratch
on a class label it cannot see (the built-in scenes' glance is blind to the class by design)
learns features from which not even a linear probe recovers the sign's position (measured:
worse than predicting the mean position), so pi has nothing to read and PPO stays at random.

`Locator` is a 1x1 conv on f_G's own feature map, CenterNet style: per cell, a logit for "an
object's centre lies in this cell" and the centre's offset inside the cell. Trained with
`locate_loss`, it makes f_G's map encode, linearly and per cell, what pi's 1x1 conv reads.
The head is thrown away after stage 0; only f_G keeps what it learnt. The objects are the
sample's annotated boxes plus its distractors' (every red-ringed sign of a scene), because
the glance cannot tell them apart and the focus step is what reads them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Locator(nn.Module):
    """(N, C, h, w) feature map -> (N, 3, h, w): presence logit, row and column offset logits."""

    def __init__(self, channels: int):
        super().__init__()
        self.head = nn.Conv2d(channels, 3, kernel_size=1)

    def forward(self, feature_map: Tensor) -> Tensor:
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
    Each of the locator's three outputs z = w . map + b goes through a pair of reduce channels
    set to +w and -w, since relu(z) - relu(-z) = z; the biases go to pi's convs. The other
    channels keep their weights but get no say in score or offset. pi then starts where f_G
    says objects are, and PPO learns from there which to look at. The scores are multiplied by
    `sharpness`: a soft-argmax of the raw logits puts the mean between a scene's several
    ringed objects (measured on cpu-demo, 128 px patches: 13% of them on the sign at 1x, 30%
    at 4x).
    """
    if getattr(policy, "head", None) != "spatial":
        raise ValueError("seed_policy needs pi's 'spatial' head (policy_head='spatial')")
    if policy.reduce.out_channels < 6 or policy.reduce.in_channels != locator.head.in_channels:
        raise ValueError(f"pi's map conv ({policy.reduce.in_channels}->{policy.reduce.out_channels} channels) "
                         f"cannot carry the locator's {locator.head.in_channels} channels (needs 6 outputs)")
    weights, biases = locator.head.weight[:, :, 0, 0], locator.head.bias
    for k in range(3):  # presence, row offset, column offset
        policy.reduce.weight[2 * k, :, 0, 0] = weights[k]
        policy.reduce.weight[2 * k + 1, :, 0, 0] = -weights[k]
    policy.cell_score.weight.zero_()
    policy.cell_score.weight[0, 0], policy.cell_score.weight[0, 1] = sharpness, -sharpness
    policy.cell_score.bias.copy_(sharpness * biases[:1])
    policy.cell_offset.weight.zero_()
    for k in (1, 2):
        policy.cell_offset.weight[k - 1, 2 * k], policy.cell_offset.weight[k - 1, 2 * k + 1] = 1.0, -1.0
    policy.cell_offset.bias.copy_(biases[1:])
