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


class MaxPoolClassifier(nn.Module):
    """f_C as evidence that persists: after the glance (t = 1) a linear head on its feature;
    from t = 2 on, one linear head shared by every step over [glance feature, elementwise
    maximum of the focus steps' features so far].

    Where the class is decided by one patch among several (a sign among decoys, a bird in a
    corner), the cascade's concatenation lets patches on decoys talk a later step out of what
    an earlier patch read, and its head for step t learns what step t's slot means from the
    few episodes in which the object was found exactly then. The maximum keeps the strongest
    evidence whatever step found it (multiple-instance pooling), so one head serves every
    step. The memory has a fixed width (glance_dim + D), which the ONNX export needs. The
    glance's feature may be narrower than the patches' (`glance_dim`: an f_G that ends at the
    map pi reads, GFConfig.glance_to_map).
    """

    def __init__(self, feature_dim: int, num_classes: int, glance_dim: int | None = None):
        super().__init__()
        self.feature_dim = feature_dim
        self.glance_dim = feature_dim if glance_dim is None else glance_dim
        self.glance_head = nn.Linear(self.glance_dim, num_classes)
        self.focus_head = nn.Linear(self.glance_dim + feature_dim, num_classes)

    def initial_memory(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros((batch, self.glance_dim + self.feature_dim))

    def forward(self, features: Tensor, memory: Tensor, step: int) -> tuple[Tensor, Tensor]:
        glance = self.glance_dim
        if step == 1:
            # shape[0], not len(): torch.export would fix the batch size at the example's
            memory = torch.cat([features, features.new_zeros((features.shape[0], self.feature_dim))], dim=1)
            return self.glance_head(features), memory
        pooled = features if step == 2 else torch.maximum(memory[:, glance:], features)
        memory = torch.cat([memory[:, :glance], pooled], dim=1)
        return self.focus_head(memory), memory

    @torch.no_grad()
    def start_focus_heads_from(self, patch_head: nn.Linear) -> None:
        """The focus head starts as `patch_head` on the pooled patch features, with no weight on
        the glance's: f_C begins where a trained patch classifier is."""
        self.focus_head.weight.zero_()
        self.focus_head.weight[:, self.glance_dim:] = patch_head.weight
        self.focus_head.bias.copy_(patch_head.bias)


class LocationPolicy(nn.Module):
    """pi: where to put the next patch, given this step's feature map and both patch sizes.

    The map (already resized to the common side S) goes through a conv and ReLU (1x1: it
    commutes with bilinear resizing, so this equals "conv, then upsample smaller maps"; with
    `kernel` 3 each cell also sees its neighbours, which tells where in the cell a small object
    sits: on the built-in scenes a 3x3 locator placed 64 px patches on the sign within three
    steps in 78% of sign scenes, a 1x1 one in 63%). The
    flattened result, one-hots of the last input (glance or size k) and of the next size, feed a
    GRU, whose state a linear head turns into the value. The mean location (row, col) in [0, 1]^2
    comes from one of two heads:

    - "sigmoid" (the paper's): a sigmoid on a linear map of the GRU state;
    - "spatial": a soft-argmax over the S x S cells of the *glance's* map. 1x1 convs give each
      glance cell a score and the patch centre's offset inside the cell (kept in the policy
      state, since later maps show patches, not the image); a linear map of the GRU state adds
      a bias per cell (e.g. "not where I looked already"). The expected centre, cell (i, j) at
      image fraction ((i + offset) / S, (j + offset) / S), becomes the location that centres a
      patch of the next size there (design.md: top = l (H - P)), with H x W from the state.
      Scoring cells with one shared conv is translation-equivariant: it generalises from a few
      thousand scenes, where the sigmoid head on a flattened map memorised them (measured on
      the built-in scenes). The cells tile the image evenly when the glance's map is S x S.
      With `inhibition` > 0 a cell's score drops by that much per unit of weight it already
      received (inhibition of return, kept in the policy state): pi moves on to the next most
      likely object instead of looking at the same one again, which wastes a step. With
      `inhibition_radius` r the drop also reaches the cells within r of one looked at (an
      object near a cell's edge lights up its neighbour too).

    `selection` "expected" places the patch at the expected centre under the cells' softmax;
    "argmax" at the likeliest cell's own centre (its gradient passes as the softmax's, straight
    through). Where a scene holds several candidates, the expectation lands between them: on
    the built-in scenes, a 3x3 locator's three expected picks put a 64 px patch on the sign in
    75% of sign scenes, its three likeliest cells (and their neighbours inhibited) in 79%.
    """

    SELECTIONS = ("expected", "argmax")

    HEADS = ("sigmoid", "spatial")

    def __init__(self, feature_dim: int, map_side: int, num_sizes: int, channels: int, hidden: int,
                 head: str = "sigmoid", patch_sizes: tuple[int, ...] = (), inhibition: float = 0.0,
                 kernel: int = 1, selection: str = "expected", inhibition_radius: int = 0):
        super().__init__()
        if head not in self.HEADS:
            raise ValueError(f"head must be one of {self.HEADS}, got {head!r}")
        if selection not in self.SELECTIONS:
            raise ValueError(f"selection must be one of {self.SELECTIONS}, got {selection!r}")
        if head == "spatial" and len(patch_sizes) != num_sizes:
            raise ValueError(f"the spatial head needs the {num_sizes} patch sizes, got {tuple(patch_sizes)}")
        self.num_sizes, self.head, self.map_side = num_sizes, head, map_side
        self.patch_sizes = tuple(patch_sizes)
        self.inhibition = float(inhibition)
        self.selection, self.inhibition_radius = selection, int(inhibition_radius)
        self.reduce = nn.Conv2d(feature_dim, channels, kernel_size=kernel, padding=kernel // 2, bias=False)
        self.cell = nn.GRUCell(channels * map_side * map_side + (num_sizes + 1) + num_sizes, hidden)
        if head == "sigmoid":  # created in this order so that seeded weights stay as they were
            self.actor = nn.Linear(hidden, 2)
        self.critic = nn.Linear(hidden, 1)
        if head == "spatial":
            self.cell_score = nn.Conv2d(channels, 1, kernel_size=1)
            self.cell_offset = nn.Conv2d(channels, 2, kernel_size=1)
            self.cell_bias = nn.Linear(hidden, map_side * map_side)
            # Starts from the glance scores alone; the memory learns to shift them.
            nn.init.zeros_(self.cell_bias.weight)
            nn.init.zeros_(self.cell_bias.bias)

    def state_size(self) -> int:
        """Width of the policy state: the GRU's; for "spatial" also the glance's cell scores and
        offsets, the weight each cell has received so far, and the image's (H, W)."""
        cells = self.map_side * self.map_side
        return self.cell.hidden_size + (4 * cells + 2 if self.head == "spatial" else 0)

    def initial_hidden(self, batch: int, like: Tensor, image_hw: tuple[int, int] | Tensor | None = None) -> Tensor:
        """Zeros, with the image size where the spatial head keeps it: one (H, W) for the batch
        or (batch, 2) of them (unknown: 0, and the location is then the centre's image fraction
        itself)."""
        hidden = like.new_zeros((batch, self.state_size()))
        if self.head == "spatial" and image_hw is not None:
            hidden[:, -2:] = torch.as_tensor(image_hw, dtype=hidden.dtype).to(hidden.device).expand(batch, 2)
        return hidden

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
        cells = self.map_side * self.map_side
        from_glance = (last_size_index == 0)[:, None]
        now = torch.cat([self.cell_score(reduced).flatten(1), torch.sigmoid(self.cell_offset(reduced)).flatten(1)], 1)
        glance = torch.where(from_glance, now, hidden[:, width:width + 3 * cells])
        visited = hidden[:, width + 3 * cells:width + 4 * cells]  # zeros until a focus step
        scores, offsets = glance[:, :cells], glance[:, cells:].unflatten(1, (2, cells))
        if self.inhibition_radius:  # a looked-at cell's neighbourhood is inhibited as much as itself
            side, reach = self.map_side, 2 * self.inhibition_radius + 1
            inhibited = nn.functional.max_pool2d(visited.view(-1, 1, side, side), reach, stride=1,
                                                 padding=self.inhibition_radius).flatten(1)
        else:
            inhibited = visited
        logits = scores + self.cell_bias(memory) - self.inhibition * inhibited
        weights = torch.softmax(logits, dim=1)
        if self.selection == "argmax":
            hard = torch.zeros_like(weights).scatter(1, logits.argmax(1, keepdim=True), 1.0)
            weights = hard + (weights - weights.detach())
        # expected patch centre as a fraction of the image, (B, 2)
        centre = ((self._cell_index(weights)[None] + offsets) * weights[:, None]).sum(-1) / self.map_side
        image_hw = hidden[:, -2:]
        side = torch.tensor(self.patch_sizes, device=weights.device, dtype=weights.dtype)[next_size_index][:, None]
        room = image_hw - side
        mean = torch.where(room > 0, (centre * image_hw - side / 2) / room.clamp(min=1.0), centre)
        return mean, value, torch.cat([memory, glance, visited + weights, image_hw], dim=1)

    def _cell_index(self, like: Tensor) -> Tensor:
        """(2, S*S): the row and column of each cell, row-major like the flattened map."""
        grid = torch.arange(self.map_side, device=like.device, dtype=like.dtype)
        return torch.stack([grid.repeat_interleave(self.map_side), grid.repeat(self.map_side)])
