"""pi's "spatial" location head: a soft-argmax over the glance's cells (msgf.models.heads)."""
import pytest
import torch

import msgf
from msgf.models.heads import LocationPolicy
from msgf.train import ppo
from msgf.train.presets import Stage2Config


def spatial_policy(side=3, dim=4, sizes=(32, 48), seed=0):
    torch.manual_seed(seed)
    policy = LocationPolicy(feature_dim=dim, map_side=side, num_sizes=len(sizes), channels=6, hidden=8,
                            head="spatial", patch_sizes=sizes)
    with torch.no_grad():  # non-zero memory bias, so the test sees both terms
        policy.cell_bias.weight.normal_(0, 0.5)
        policy.cell_bias.bias.normal_(0, 0.5)
    return policy


def reference_mean(policy, fmap, memory, sides, image_hw=None, glance=None):
    """Loop by loop: score each glance cell (reduce -> ReLU -> cell_score) and place the centre
    in it (sigmoid of cell_offset), add the memory's bias, softmax over cells; the expected
    centre (i + offset) / S as image fraction c; then top = l (H - P) = c H - P / 2."""
    side = fmap.shape[-1]
    w_reduce = policy.reduce.weight[:, :, 0, 0]
    bias = policy.cell_bias(memory)
    means = []
    for n in range(fmap.shape[0]):
        logits, centres = [], []
        for i in range(side):
            for j in range(side):
                if glance is None:
                    r = torch.relu(w_reduce @ fmap[n, :, i, j])
                    score = r @ policy.cell_score.weight[0, :, 0, 0] + policy.cell_score.bias[0]
                    offset = torch.sigmoid(policy.cell_offset.weight[:, :, 0, 0] @ r + policy.cell_offset.bias)
                else:
                    score, offset = glance[n][0][i * side + j], glance[n][1][:, i * side + j]
                logits.append(score + bias[n, i * side + j])
                centres.append(torch.stack([(i + offset[0]) / side, (j + offset[1]) / side]))
        weights = torch.softmax(torch.stack(logits), 0)
        c = (weights[:, None] * torch.stack(centres)).sum(0)
        if image_hw is None:
            means.append(c)
        else:
            hw = torch.tensor(image_hw, dtype=torch.float32)
            means.append((c * hw - sides[n] / 2) / (hw - sides[n]))
    return torch.stack(means)


def test_mean_is_the_soft_argmax_of_glance_cells_placed_for_the_next_size():
    policy = spatial_policy()
    fmap = torch.randn(4, 4, 3, 3)
    glance = torch.zeros(4, dtype=torch.int64)
    nxt = torch.tensor([0, 1, 1, 0])
    sides = [32, 48, 48, 32]
    cells = 9
    with torch.no_grad():
        for image_hw in (None, (300, 400)):
            mean, value, state = policy(fmap, glance, nxt, policy.initial_hidden(4, fmap, image_hw))
            torch.testing.assert_close(mean, reference_mean(policy, fmap, state[:, :8], sides, image_hw),
                                       rtol=1e-5, atol=1e-6)
        # At a focus step the map shows a patch: the cells come from the glance, kept in the state.
        other = torch.randn(4, 4, 3, 3)
        mean2, _, state2 = policy(other, torch.tensor([1, 2, 1, 2]), nxt, state)
        kept = [(state[n, 8:8 + cells], state[n, 8 + cells:8 + 3 * cells].view(2, cells)) for n in range(4)]
        torch.testing.assert_close(mean2, reference_mean(policy, other, state2[:, :8], sides, (300, 400), kept),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(state2[:, 8:8 + 3 * cells], state[:, 8:8 + 3 * cells])
        torch.testing.assert_close(state2[:, -2:], state[:, -2:])
    # glance cells' scores and offsets, the weight each cell received, the image's (H, W)
    assert value.shape == (4,) and state.shape == (4, policy.state_size()) == (4, 8 + 4 * 9 + 2)


def test_a_dominant_cell_centres_the_patch_on_it():
    policy = spatial_policy(side=4)
    with torch.no_grad():
        policy.cell_bias.weight.zero_()
        policy.cell_bias.bias.zero_()
        policy.reduce.weight.copy_(torch.eye(6, 4)[:, :, None, None])
        policy.cell_score.weight.zero_()
        policy.cell_score.weight[0, 0] = 100.0
        policy.cell_offset.weight.zero_()
        policy.cell_offset.bias.zero_()  # sigmoid(0): the cell's middle
        fmap = torch.zeros(2, 4, 4, 4)
        fmap[0, 0, 3, 1] = 1.0
        fmap[1, 0, 0, 2] = 1.0
        mean, _, _ = policy(fmap, torch.zeros(2, dtype=torch.int64), torch.tensor([1, 0]),
                            policy.initial_hidden(2, fmap, (400, 800)))
    # design.md: top = floor(l_row (H - P)); the patch's middle must be the cell's middle
    for (l_row, l_col), side, (i, j) in zip(mean.tolist(), (48, 32), ((3, 1), (0, 2))):
        middle = (l_row * (400 - side) + side / 2, l_col * (800 - side) + side / 2)
        assert middle == pytest.approx(((i + 0.5) * 100, (j + 0.5) * 200), abs=1e-3)


def test_inhibition_of_return_visits_the_objects_in_order_of_their_scores():
    # Three "objects" on a 4x4 map with scores 3 > 2 > 1 (x100); with inhibition pi looks at
    # each in turn, without it at the best one every time.
    cells = {(3, 1): 3.0, (0, 2): 2.0, (1, 0): 1.0}
    fmap = torch.zeros(1, 4, 4, 4)
    for (i, j), score in cells.items():
        fmap[0, 0, i, j] = score
    for inhibition, expected in ((1e4, list(cells)), (0.0, [(3, 1)] * 3)):
        policy = LocationPolicy(feature_dim=4, map_side=4, num_sizes=1, channels=6, hidden=8, head="spatial",
                                patch_sizes=(32,), inhibition=inhibition)
        with torch.no_grad():
            policy.reduce.weight.copy_(torch.eye(6, 4)[:, :, None, None])
            policy.cell_score.weight.zero_()
            policy.cell_score.weight[0, 0] = 100.0
            policy.cell_offset.weight.zero_()
            policy.cell_offset.bias.zero_()
            state, last, visited = policy.initial_hidden(1, fmap, (400, 800)), torch.zeros(1, dtype=torch.int64), []
            for _ in range(3):
                mean, _, state = policy(fmap if not visited else torch.randn(1, 4, 4, 4), last,
                                        torch.zeros(1, dtype=torch.int64), state)
                last = torch.ones(1, dtype=torch.int64)
                middle = (mean[0, 0] * (400 - 32) + 16, mean[0, 1] * (800 - 32) + 16)
                visited.append((int(middle[0] // 100), int(middle[1] // 200)))
        assert visited == expected, inhibition


@pytest.mark.parametrize("radius", [0, 1])
def test_argmax_selection_visits_the_likeliest_cells_and_inhibits_their_neighbourhood(radius):
    # Oracle: a brute-force loop over a 5x5 map of random scores: pick the highest cell not yet
    # inhibited, put the patch centre at (cell + offset) / S, inhibit it (and, with radius 1,
    # its 8 neighbours). Two hot cells side by side: the expected centre would fall between them.
    torch.manual_seed(3)
    side = 5
    fmap = torch.randn(2, 4, side, side)
    fmap[:, 0, 2, 2] += 6.0
    fmap[:, 0, 2, 3] += 5.9
    policy = LocationPolicy(feature_dim=4, map_side=side, num_sizes=1, channels=6, hidden=8, head="spatial",
                            patch_sizes=(32,), inhibition=1e4, selection="argmax", inhibition_radius=radius)
    with torch.no_grad():
        policy.reduce.weight.copy_(torch.eye(6, 4)[:, :, None, None] + 0.0)
        policy.cell_score.weight.zero_()
        policy.cell_score.weight[0, 0] = 3.0
        state, last = policy.initial_hidden(2, fmap, None), torch.zeros(2, dtype=torch.int64)
        scores = policy.cell_score(torch.relu(policy.reduce(fmap)))[:, 0].flatten(1)
        offsets = torch.sigmoid(policy.cell_offset(torch.relu(policy.reduce(fmap)))).flatten(2)
        inhibited = torch.zeros_like(scores, dtype=torch.bool)
        for _ in range(4):
            mean, _, state = policy(fmap if not inhibited.any() else torch.randn(2, 4, side, side), last,
                                    torch.zeros(2, dtype=torch.int64), state)
            last = torch.ones(2, dtype=torch.int64)
            for n in range(2):
                cell = int(torch.where(inhibited[n], -1e9, scores[n]).argmax())
                i, j = divmod(cell, side)
                expected = torch.stack([(i + offsets[n, 0, cell]) / side, (j + offsets[n, 1, cell]) / side])
                torch.testing.assert_close(mean[n], expected)
                for di in range(-radius, radius + 1):
                    for dj in range(-radius, radius + 1):
                        if 0 <= i + di < side and 0 <= j + dj < side:
                            inhibited[n, (i + di) * side + j + dj] = True
    # the runner-up beside the best is done with either way: picked next (radius 0) or inhibited (radius 1)
    assert bool(inhibited[:, 2 * side + 3].all())
    assert (radius == 1) == (int(inhibited.sum()) > 8)


def test_argmax_selection_passes_the_softmax_gradient():
    policy = spatial_policy()
    policy.selection = "argmax"
    fmap = torch.randn(3, 4, 3, 3)
    mean, _, _ = policy(fmap, torch.zeros(3, dtype=torch.int64), torch.ones(3, dtype=torch.int64),
                        policy.initial_hidden(3, fmap, (300, 400)))
    mean.sum().backward()
    assert policy.cell_score.weight.grad is not None and float(policy.cell_score.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="selection"):
        LocationPolicy(4, 3, 1, channels=6, hidden=8, head="spatial", patch_sizes=(32,), selection="best")


def test_ppo_learns_to_follow_the_hot_cell():
    # A bandit on pi's spatial head: one random cell of the map is "hot" and the reward is minus
    # the distance to that cell's middle. The mean starts near the middle of the image.
    policy = spatial_policy(side=4, sizes=(32,), seed=1)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    cfg = Stage2Config(update_epochs=4, minibatches=4)
    gen = torch.Generator().manual_seed(0)
    std, batch = 0.1, 128

    def play():
        hot = torch.randint(0, 16, (batch,), generator=gen)
        fmap = 0.1 * torch.randn((1, batch, 4, 4, 4), generator=gen)
        fmap[0, torch.arange(batch), 0, hot // 4, hot % 4] += 3.0
        target = (torch.stack([hot // 4, hot % 4], -1).float() + 0.5) / 4
        zeros = torch.zeros((1, batch), dtype=torch.int64)
        with torch.no_grad():
            mean, value, _ = policy(fmap[0], zeros[0], zeros[0], policy.initial_hidden(batch, fmap[0]))
        locs = mean[None] + std * torch.randn((1, batch, 2), generator=gen)
        rewards = -(locs - target).norm(dim=-1)
        log_probs = torch.distributions.Normal(mean[None], std).log_prob(locs).sum(-1)
        rollout = ppo.Rollout(fmap, zeros, zeros, locs, log_probs, value[None], rewards, rewards,
                              rewards - value[None])
        return rollout, (mean - target).norm(dim=-1).mean().item()

    _, first_error = play()
    for _ in range(60):
        rollout, error = play()
        ppo.ppo_update(policy, optimizer, rollout, cfg, std, gen)
    assert error < 0.4 * first_error, (first_error, error)


def test_model_with_the_spatial_head_round_trips(tmp_path):
    torch.manual_seed(0)
    model = msgf.build_model("mobilenet_v3_small", num_classes=3, glance_size=64, patch_sizes=[32, 48], T=3,
                             policy_head="spatial").eval()
    images = torch.randint(0, 256, (2, 100, 120, 3), dtype=torch.uint8)
    with torch.no_grad():
        states = model(images, 32)
    path = tmp_path / "m.pt"
    msgf.save_checkpoint(model, path)
    loaded = msgf.load_checkpoint(path).eval()
    assert loaded.config.policy_head == "spatial"
    with torch.no_grad():
        again = loaded(images, 32)
    torch.testing.assert_close(again[-1].logits, states[-1].logits)
    policy_macs = model.macs_breakdown(2, 32)["policy"]
    assert policy_macs > 0


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="policy_head"):
        msgf.build_model("mobilenet_v3_small", num_classes=3, glance_size=32, patch_sizes=[32], T=2,
                         policy_head="argmax")

