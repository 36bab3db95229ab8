"""The small modules on top of the encoders: classifier f_C, auxiliary heads FC_t, policy pi."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class GRUClassifier(nn.Module):
    """f_C as a GRU over the per-step features, a linear layer on its hidden state."""

    def __init__(self, feature_dim: int, num_classes: int, hidden: int):
        super().__init__()
        self.cell = nn.GRUCell(feature_dim, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def initial_memory(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros((batch, self.cell.hidden_size))

    def forward(self, features: Tensor, memory: Tensor, step: int) -> tuple[Tensor, Tensor]:
        memory = self.cell(features, memory)
        return self.fc(memory), memory


class CascadeClassifier(nn.Module):
    """f_C as one linear head per step t over the concatenated features of steps 1..t."""

    def __init__(self, feature_dim: int, num_classes: int, steps: int):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(feature_dim * t, num_classes) for t in range(1, steps + 1))

    def initial_memory(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros((batch, 0))

    def forward(self, features: Tensor, memory: Tensor, step: int) -> tuple[Tensor, Tensor]:
        memory = torch.cat([memory, features], dim=1)
        return self.heads[step - 1](memory), memory

    @torch.no_grad()
    def start_focus_heads_from(self, patch_head: nn.Linear) -> None:
        """Heads t >= 2 start as `patch_head` averaged over the focus steps' features, with no
        weight on the glance's: f_C then begins where a trained patch classifier is."""
        dim = patch_head.in_features
        for t, head in enumerate(self.heads, start=1):
            if t == 1:
                continue
            head.weight.zero_()
            for step in range(2, t + 1):
                head.weight[:, (step - 1) * dim:step * dim] = patch_head.weight / (t - 1)
            head.bias.copy_(patch_head.bias)


class LocationPolicy(nn.Module):
    """pi: where to put the next patch, given this step's feature map and both patch sizes.

    The map (already resized to the common side S) goes through a 1x1 conv and ReLU; a 1x1 conv
    commutes with bilinear resizing, so this equals "conv, then upsample smaller maps". The
    flattened result, one-hots of the last input (glance or size k) and of the next size, feed a
    GRU, whose state a linear head turns into the value. The mean location (row, col) in [0, 1]^2
    comes from one of two heads:

    - "sigmoid" (the paper's): a sigmoid on a linear map of the GRU state;
    - "spatial": a soft-argmax over the S x S cells of the *glance's* map. A 1x1 conv scores each
      glance cell (kept in the policy state, since later maps show patches, not the image) and
      a linear map of the GRU state adds a bias per cell (e.g. "not where I looked already").
      The expected cell position, cell i at i / (S - 1), is the mean. Scoring cells with one
      shared conv is translation-equivariant: it generalises from a few thousand scenes, where
      the sigmoid head on a flattened map memorises them (measured on the built-in scenes).
      i / (S - 1) puts a patch centre on cell i's centre exactly when the patch is one cell
      wide (P = H / S), and within a fraction of a cell for the other sizes.
    """

    HEADS = ("sigmoid", "spatial")

    def __init__(self, feature_dim: int, map_side: int, num_sizes: int, channels: int, hidden: int,
                 head: str = "sigmoid"):
        super().__init__()
        if head not in self.HEADS:
            raise ValueError(f"head must be one of {self.HEADS}, got {head!r}")
        self.num_sizes, self.head, self.map_side = num_sizes, head, map_side
        self.reduce = nn.Conv2d(feature_dim, channels, kernel_size=1, bias=False)
        self.cell = nn.GRUCell(channels * map_side * map_side + (num_sizes + 1) + num_sizes, hidden)
        if head == "sigmoid":  # created in this order so that seeded weights stay as they were
            self.actor = nn.Linear(hidden, 2)
        self.critic = nn.Linear(hidden, 1)
        if head == "spatial":
            self.cell_score = nn.Conv2d(channels, 1, kernel_size=1)
            self.cell_bias = nn.Linear(hidden, map_side * map_side)
            # Starts from the glance scores alone; the memory learns to shift them.
            nn.init.zeros_(self.cell_bias.weight)
            nn.init.zeros_(self.cell_bias.bias)

    def state_size(self) -> int:
        """Width of the policy state: the GRU's, plus the glance's cell scores for "spatial"."""
        extra = self.map_side * self.map_side if self.head == "spatial" else 0
        return self.cell.hidden_size + extra

    def initial_hidden(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros((batch, self.state_size()))

    def forward(self, feature_map: Tensor, last_size_index: Tensor, next_size_index: Tensor,
                hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        reduced = torch.relu(self.reduce(feature_map))
        # Rows of an identity matrix rather than F.one_hot: it also runs on the meta device,
        # where the MACs are measured.
        last = torch.eye(self.num_sizes + 1, device=reduced.device, dtype=reduced.dtype)[last_size_index]
        nxt = torch.eye(self.num_sizes, device=reduced.device, dtype=reduced.dtype)[next_size_index]
        width = self.cell.hidden_size
        memory = self.cell(torch.cat([reduced.flatten(1), last, nxt], dim=1), hidden[:, :width])
        value = self.critic(memory).squeeze(1)
        if self.head == "sigmoid":
            return torch.sigmoid(self.actor(memory)), value, memory
        from_glance = (last_size_index == 0)[:, None]
        scores = torch.where(from_glance, self.cell_score(reduced).flatten(1), hidden[:, width:])
        weights = torch.softmax(scores + self.cell_bias(memory), dim=1)
        return weights @ self._cell_positions(weights), value, torch.cat([memory, scores], dim=1)

    def _cell_positions(self, like: Tensor) -> Tensor:
        """(S*S, 2): cell (i, j) at (i / (S - 1), j / (S - 1)), row-major like the flattened map."""
        side = self.map_side
        grid = torch.arange(side, device=like.device, dtype=like.dtype) / max(side - 1, 1)
        if side == 1:
            grid = grid + 0.5
        return torch.stack([grid.repeat_interleave(side), grid.repeat(side)], dim=1)
