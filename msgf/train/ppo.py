"""Stage II: the patch proposal network pi trained by PPO, encoders and classifier frozen.

An episode is one image: the glance, then T-1 focus steps. At step t the policy reads the
step's feature map and places the next patch (of a uniformly random size, so pi sees every
size); the reward is how much the classifier's probability of the true class after that patch
beats a baseline:

- "contrastive" (default): r_t = p_{t+1,y}(policy patch) - mean_j p_{t+1,y}(random patch j),
  the random patches of the same size taken from the same state;
- "increments": r_t = p_{t+1,y} - p_{t,y}.

`collect_rollout` plays the episodes without gradients; `ppo_update` is the whole PPO update,
top to bottom, in the style of CleanRL's ppo_continuous_action.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from msgf.train.presets import Stage2Config


@dataclass
class Rollout:
    """Per focus step t (first dim, T-1) and sample (second dim): what pi saw and did."""

    feature_maps: Tensor  # (T-1, B, D, S, S) input map of the step that placed the patch
    last_size_index: Tensor  # (T-1, B) 0 = glance, k + 1 = patch_sizes[k]
    next_size_index: Tensor  # (T-1, B)
    locations: Tensor  # (T-1, B, 2) sampled (unclamped) locations
    log_probs: Tensor  # (T-1, B) under the policy that sampled them
    values: Tensor  # (T-1, B) critic estimates
    rewards: Tensor  # (T-1, B)
    returns: Tensor  # (T-1, B) discounted with gamma
    advantages: Tensor  # (T-1, B) returns - values
    first_hidden: Tensor | None = None  # (B, Hp) pi's state after the glance; None: zeros


@torch.no_grad()
def collect_rollout(model, images: Tensor, labels: Tensor, sizes: Tensor, cfg: Stage2Config,
                    generator: torch.Generator, autocast, reward_mask: Tensor | None = None) -> Rollout:
    """Play one episode per image. sizes (B, T-1) patch sides; model in eval mode.
    reward_mask (B,) bool: episodes whose rewards count (others get 0); None: all."""
    std = model.config.location_std
    n, steps = len(labels), model.config.T - 1
    device = labels.device
    rows = torch.arange(n, device=device)
    maps, last, nxt, locs, logps, values, rewards = [], [], [], [], [], [], []
    with autocast():
        state = model.glance(images)
    first_hidden = state.policy_hidden.float()
    p_true = state.probs[rows, labels]
    for t in range(steps):
        with autocast():
            proposal = model.propose(state, sizes[:, t])
        noise = torch.randn((n, 2), generator=generator).to(device)
        action = proposal.mean.float() + std * noise
        maps.append(state.feature_map)
        last.append(state.size_index)
        nxt.append(proposal.next_size_index)
        locs.append(action)
        logps.append(_log_prob(proposal.mean.float(), std, action))
        values.append(proposal.value.float())
        with autocast():
            after = model.focus(state, images, action, sizes[:, t], proposal=proposal)
        p_after = after.probs[rows, labels]
        if cfg.reward == "contrastive":
            baseline = torch.zeros_like(p_after)
            for _ in range(cfg.reward_samples):
                random_locs = torch.rand((n, 2), generator=generator).to(device)
                with autocast():
                    other = model.focus(state, images, random_locs, sizes[:, t], proposal=proposal)
                baseline += other.probs[rows, labels] / cfg.reward_samples
            rewards.append(p_after - baseline)
        else:  # "increments"
            rewards.append(p_after - p_true)
        state, p_true = after, p_after
    rewards_t = torch.stack(rewards)
    if reward_mask is not None:
        rewards_t = rewards_t * reward_mask.to(rewards_t.dtype)[None]
    returns = torch.zeros_like(rewards_t)
    running = torch.zeros_like(rewards_t[0])
    for t in reversed(range(steps)):
        running = rewards_t[t] + cfg.gamma * running
        returns[t] = running
    values_t = torch.stack(values)
    return Rollout(torch.stack(maps).float(), torch.stack(last), torch.stack(nxt), torch.stack(locs),
                   torch.stack(logps), values_t, rewards_t, returns, returns - values_t, first_hidden)


def _log_prob(mean: Tensor, std: float, action: Tensor) -> Tensor:
    return torch.distributions.Normal(mean, std).log_prob(action).sum(-1)


def replay_policy(policy, rollout: Rollout, rows: Tensor, std: float) -> tuple[Tensor, Tensor, Tensor]:
    """Re-run pi's recurrence over the stored episodes `rows`: (log_probs, values, entropy), each (T-1, b).

    The feature maps do not depend on pi (encoders frozen, actions fixed), so the episode's
    policy inputs are replayed exactly; only pi's own hidden state is recomputed.
    """
    hidden = None
    log_probs, values, entropies = [], [], []
    for t in range(rollout.feature_maps.shape[0]):
        fmap = rollout.feature_maps[t, rows]
        if hidden is None:
            hidden = policy.initial_hidden(len(rows), fmap) if rollout.first_hidden is None \
                else rollout.first_hidden[rows]
        mean, value, hidden = policy(fmap, rollout.last_size_index[t, rows], rollout.next_size_index[t, rows], hidden)
        dist = torch.distributions.Normal(mean, std)
        log_probs.append(dist.log_prob(rollout.locations[t, rows]).sum(-1))
        values.append(value)
        entropies.append(dist.entropy().sum(-1))
    return torch.stack(log_probs), torch.stack(values), torch.stack(entropies)


def ppo_update(policy, optimizer: torch.optim.Optimizer, rollout: Rollout, cfg: Stage2Config, std: float,
               generator: torch.Generator, all_reduce_grads=None) -> dict:
    """The PPO update on one rollout batch: clipped surrogate + value loss + entropy bonus.

    all_reduce_grads: averages gradients over processes (distributed runs), called after
    backward and before clipping.
    """
    batch = rollout.rewards.shape[1]
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clip_fraction": 0.0}
    updates = 0
    for _ in range(cfg.update_epochs):
        order = torch.randperm(batch, generator=generator)
        for rows in order.chunk(cfg.minibatches):
            rows = rows.to(rollout.rewards.device)
            new_log_probs, new_values, entropy = replay_policy(policy, rollout, rows, std)
            log_ratio = new_log_probs - rollout.log_probs[:, rows]
            ratio = log_ratio.exp()
            with torch.no_grad():
                approx_kl = ((ratio - 1) - log_ratio).mean()  # the k3 estimator, as CleanRL
                clip_fraction = ((ratio - 1.0).abs() > cfg.clip).float().mean()

            advantages = rollout.advantages[:, rows]
            if cfg.normalize_advantages:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

            # clipped surrogate objective (epsilon = cfg.clip)
            policy_loss = torch.max(-advantages * ratio,
                                    -advantages * torch.clamp(ratio, 1 - cfg.clip, 1 + cfg.clip)).mean()
            # value loss (c1 = cfg.value_coef) against the discounted returns (gamma = cfg.gamma)
            value_loss = 0.5 * ((new_values - rollout.returns[:, rows]) ** 2).mean()
            # entropy bonus (c2 = cfg.entropy_coef); with pi's fixed std it is a constant
            entropy_bonus = entropy.mean()
            loss = policy_loss - cfg.entropy_coef * entropy_bonus + cfg.value_coef * value_loss

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if all_reduce_grads is not None:
                all_reduce_grads(policy)
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()

            updates += 1
            for key, value in (("policy_loss", policy_loss), ("value_loss", value_loss), ("entropy", entropy_bonus),
                               ("approx_kl", approx_kl), ("clip_fraction", clip_fraction)):
                stats[key] += float(value.detach())
    return {k: v / max(updates, 1) for k, v in stats.items()}
