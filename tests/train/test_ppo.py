"""Stage II: rollouts, rewards, the replayed recurrence and the PPO update itself."""
from __future__ import annotations

import contextlib

import pytest
import torch

import msgf
from msgf.models.heads import LocationPolicy
from msgf.train import ppo
from msgf.train.presets import Stage2Config


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = msgf.build_model("mobilenet_v3_small", num_classes=4, glance_size=32, patch_sizes=[32, 48], T=3)
    # BatchNorm statistics from a few batches, so that what a patch shows changes the output
    # (with the initial statistics every activation vanishes and all patches look alike)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for _ in range(3):
            images = torch.randint(0, 256, (8, 64, 96, 3), dtype=torch.uint8, generator=gen)
            model(images, 48, torch.rand((8, 2, 2), generator=gen))
    return model.eval()


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (6, 64, 96, 3), dtype=torch.uint8, generator=gen)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    sizes = torch.tensor([[32, 48], [48, 48], [32, 32], [48, 32], [32, 48], [48, 48]])
    return images, labels, sizes


def test_increments_rewards_telescope_and_returns_discount(tiny_model, batch):
    images, labels, sizes = batch
    cfg = Stage2Config(reward="increments", gamma=0.7)
    rollout = ppo.collect_rollout(tiny_model, images, labels, sizes, cfg, torch.Generator().manual_seed(0),
                                  contextlib.nullcontext)
    # replay the episode by hand with the sampled locations: p_T,y - p_1,y is the sum of increments
    with torch.no_grad():
        state = tiny_model.glance(images)
        p_first = state.probs[torch.arange(6), labels]
        for t in range(2):
            state = tiny_model.focus(state, images, rollout.locations[t], sizes[:, t])
        p_last = state.probs[torch.arange(6), labels]
    torch.testing.assert_close(rollout.rewards.sum(0), p_last - p_first, atol=1e-5, rtol=0)
    torch.testing.assert_close(rollout.returns[1], rollout.rewards[1])
    torch.testing.assert_close(rollout.returns[0], rollout.rewards[0] + 0.7 * rollout.rewards[1])
    torch.testing.assert_close(rollout.advantages, rollout.returns - rollout.values)


def test_contrastive_reward_compares_with_random_patches(tiny_model, batch):
    images, labels, sizes = batch
    cfg = Stage2Config(reward="contrastive", reward_samples=3)
    rollout = ppo.collect_rollout(tiny_model, images, labels, sizes, cfg, torch.Generator().manual_seed(0),
                                  contextlib.nullcontext)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # same generator order as the rollout: noise, then the random patches
        state = tiny_model.glance(images)
        rows = torch.arange(6)
        for t in range(2):
            proposal = tiny_model.propose(state, sizes[:, t])
            noise = torch.randn((6, 2), generator=gen)
            torch.testing.assert_close(rollout.locations[t], proposal.mean + 0.1 * noise)
            after = tiny_model.focus(state, images, rollout.locations[t], sizes[:, t])
            baseline = sum(tiny_model.focus(state, images, torch.rand((6, 2), generator=gen), sizes[:, t])
                           .probs[rows, labels] for _ in range(3)) / 3
            torch.testing.assert_close(rollout.rewards[t], after.probs[rows, labels] - baseline, atol=1e-5, rtol=0)
            state = after
    assert rollout.rewards.abs().min() > 1e-4  # the patches do matter to this model


@pytest.mark.parametrize("head", ["sigmoid", "spatial"])
def test_replay_matches_the_rollout_policy(tiny_model, batch, head):
    images, labels, sizes = batch
    model = tiny_model
    if head == "spatial":  # same encoders, pi's spatial head (which keeps the image size in its state)
        torch.manual_seed(1)
        model = msgf.build_model("mobilenet_v3_small", num_classes=4, glance_size=32, patch_sizes=[32, 48], T=3,
                                 policy_head="spatial")
        model.load_state_dict({k: v for k, v in tiny_model.state_dict().items() if not k.startswith("policy.")},
                              strict=False)
        model.eval()
    rollout = ppo.collect_rollout(model, images, labels, sizes, Stage2Config(), torch.Generator().manual_seed(1),
                                  contextlib.nullcontext)
    rows = torch.tensor([4, 0, 2])
    with torch.no_grad():
        log_probs, values, entropy = ppo.replay_policy(model.policy, rollout, rows, 0.1)
    torch.testing.assert_close(log_probs, rollout.log_probs[:, rows], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, rollout.values[:, rows], atol=1e-6, rtol=1e-5)
    assert entropy.shape == (2, 3)


def test_ppo_update_moves_the_policy_towards_rewarded_locations():
    # A bandit with pi's own architecture: reward is minus the distance to a target location,
    # which depends on a feature of the input map. PPO must learn to follow it.
    torch.manual_seed(0)
    policy = LocationPolicy(feature_dim=4, map_side=2, num_sizes=2, channels=4, hidden=32)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    cfg = Stage2Config(update_epochs=4, minibatches=4)
    gen = torch.Generator().manual_seed(0)
    std, steps, batch = 0.1, 2, 128

    def play():
        fmap = torch.randn((steps, batch, 4, 2, 2), generator=gen)
        side = (fmap[:, :, 0].mean((-1, -2)) > 0).float()  # which corner is rewarded
        target = torch.stack([0.2 + 0.6 * side, 0.8 - 0.6 * side], -1)
        last = torch.zeros((steps, batch), dtype=torch.int64)
        nxt = torch.zeros((steps, batch), dtype=torch.int64)
        with torch.no_grad():
            hidden, means, values = torch.zeros((batch, 32)), [], []
            for t in range(steps):
                mean, value, hidden = policy(fmap[t], last[t], nxt[t], hidden)
                means.append(mean)
                values.append(value)
            means, values = torch.stack(means), torch.stack(values)
        locs = means + std * torch.randn(means.shape, generator=gen)
        rewards = -(locs - target).norm(dim=-1)
        returns = torch.stack([rewards[0] + cfg.gamma * rewards[1], rewards[1]])
        log_probs = torch.distributions.Normal(means, std).log_prob(locs).sum(-1)
        rollout = ppo.Rollout(fmap, last, nxt, locs, log_probs, values, rewards, returns, returns - values)
        return rollout, (means - target).norm(dim=-1).mean().item()

    _, first_error = play()
    for _ in range(60):
        rollout, error = play()
        stats = ppo.ppo_update(policy, optimizer, rollout, cfg, std, gen)
    assert error < 0.5 * first_error, (first_error, error)
    assert 0 <= stats["clip_fraction"] <= 1 and stats["value_loss"] > 0


def test_reward_mask_zeroes_masked_episodes(tiny_model, batch):
    images, labels, sizes = batch
    mask = torch.tensor([True, False, True, False, True, True])
    cfg = Stage2Config(reward="increments")
    full = ppo.collect_rollout(tiny_model, images, labels, sizes, cfg, torch.Generator().manual_seed(2),
                               contextlib.nullcontext)
    masked = ppo.collect_rollout(tiny_model, images, labels, sizes, cfg,
                                 torch.Generator().manual_seed(2), contextlib.nullcontext, mask)
    torch.testing.assert_close(masked.rewards[:, mask], full.rewards[:, mask])
    assert torch.all(masked.rewards[:, ~mask] == 0) and torch.all(masked.returns[:, ~mask] == 0)
    assert full.rewards[:, ~mask].abs().sum() > 0
