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


class LocationPolicy(nn.Module):
    """pi: where to put the next patch, given this step's feature map and both patch sizes.

    The map (already resized to the common side S) goes through a 1x1 conv and ReLU; a 1x1 conv
    commutes with bilinear resizing, so this equals "conv, then upsample smaller maps". The
    flattened result, one-hots of the last input (glance or size k) and of the next size, feed a
    GRU; a sigmoid head gives the mean location (row, col) in [0, 1]^2 and a linear head the value.
    """

    def __init__(self, feature_dim: int, map_side: int, num_sizes: int, channels: int, hidden: int):
        super().__init__()
        self.num_sizes = num_sizes
        self.reduce = nn.Conv2d(feature_dim, channels, kernel_size=1, bias=False)
        self.cell = nn.GRUCell(channels * map_side * map_side + (num_sizes + 1) + num_sizes, hidden)
        self.actor = nn.Linear(hidden, 2)
        self.critic = nn.Linear(hidden, 1)

    def initial_hidden(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros((batch, self.cell.hidden_size))

    def forward(self, feature_map: Tensor, last_size_index: Tensor, next_size_index: Tensor,
                hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        reduced = torch.relu(self.reduce(feature_map)).flatten(1)
        # Rows of an identity matrix rather than F.one_hot: it also runs on the meta device,
        # where the MACs are measured.
        last = torch.eye(self.num_sizes + 1, device=reduced.device, dtype=reduced.dtype)[last_size_index]
        nxt = torch.eye(self.num_sizes, device=reduced.device, dtype=reduced.dtype)[next_size_index]
        hidden = self.cell(torch.cat([reduced, last, nxt], dim=1), hidden)
        return torch.sigmoid(self.actor(hidden)), self.critic(hidden).squeeze(1), hidden
