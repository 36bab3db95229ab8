import math

import pytest
import torch
import torch.nn.functional as F

import msgf
from msgf.models.state import cat_states

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def normalised(images_uint8: torch.Tensor) -> torch.Tensor:
    return (images_uint8.permute(0, 3, 1, 2).float() / 255 - MEAN) / STD


def test_glance_reads_the_antialiased_whole_image(resnet_model, images):
    state = resnet_model.glance(images)
    expected = F.interpolate(normalised(images), size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        _, features = resnet_model.global_encoder(expected)
    assert state.step == 1 and torch.equal(state.index, torch.arange(5))
    torch.testing.assert_close(state.features, features, rtol=1e-4, atol=1e-4)
    assert state.logits.shape == (5, 5) and state.feature_map.shape == (5, 512, 2, 2)
    torch.testing.assert_close(state.confidence, state.probs.max(1).values)
    assert torch.equal(state.size_index, torch.zeros(5, dtype=torch.int64))


def test_focus_crops_each_sample_at_its_own_location_and_size(resnet_model, images):
    state = resnet_model.glance(images).select(torch.tensor([4, 1, 2]))
    locs = torch.tensor([[0.0, 1.0], [0.37, 0.61], [1.0, 0.25]])
    sizes = [48, 32, 48]
    with torch.no_grad():
        out = resnet_model.focus(state, images, locs, sizes)
    assert out.step == 2 and torch.equal(out.index, torch.tensor([4, 1, 2]))
    assert torch.equal(out.size_index, torch.tensor([2, 1, 2]))
    for row, (image, (l_row, l_col), side) in enumerate(zip([4, 1, 2], locs.tolist(), sizes)):
        # design.md section 4: top = floor(l_row * (H - P)), left = floor(l_col * (W - P)).
        top, left = math.floor(l_row * (70 - side)), math.floor(l_col * (90 - side))
        patch = normalised(images[image:image + 1, top:top + side, left:left + side])
        with torch.no_grad():
            _, features = resnet_model.local_encoder(patch)
        torch.testing.assert_close(out.features[row], features[0], rtol=1e-4, atol=1e-4)


def test_a_zoomed_patch_is_resized_to_its_input_side(images):
    from torchvision.ops import roi_align

    torch.manual_seed(0)
    # given unsorted: the input sides are sorted with the patch sizes they belong to
    model = msgf.build_model("resnet18", 5, 32, [48, 32], 3, patch_input_sizes=[64, 32]).eval()
    assert model.config.patch_sizes == (32, 48) and model.config.focus_input_sizes == (32, 64)
    assert model.config.input_side(48) == 64
    locs = torch.tensor([[0.0, 1.0], [0.37, 0.61], [1.0, 0.25], [0.5, 0.5], [0.2, 0.9]])
    sizes = [48, 32, 48, 48, 32]
    with torch.no_grad():
        out = model.focus(model.glance(images), images, locs, sizes)
    for row, ((l_row, l_col), side) in enumerate(zip(locs.tolist(), sizes)):
        top, left = math.floor(l_row * (70 - side)), math.floor(l_col * (90 - side))
        # the crop's box mapping is roi_align's (aligned, one sample per bin), which reads the
        # image around the box where upsampling; normalising commutes with it
        box = torch.tensor([[float(row), left, top, left + side, top + side]])
        patch = roi_align(normalised(images), box, model.config.input_side(side), 1.0, 1, aligned=True)
        with torch.no_grad():
            _, features = model.local_encoder(patch)
        torch.testing.assert_close(out.features[row], features[0], rtol=1e-4, atol=1e-4)
    # a 48 px patch read at 64 px costs what a 64 px patch costs unzoomed
    native = msgf.build_model("resnet18", 5, 32, [32, 64], 3)
    assert model.step_macs(2, 48) == native.step_macs(2, 64) > model.step_macs(2, 32)
    with pytest.raises(ValueError, match="patch_input_sizes"):
        msgf.build_model("resnet18", 5, 32, [32, 48], 3, patch_input_sizes=[64])
    with pytest.raises(ValueError, match="patch_input_sizes"):
        msgf.models.config.GFConfig(backbone="resnet18", num_classes=5, glance_size=32, patch_sizes=(32, 48), T=3,
                                    classifier="gru", patch_input_sizes=(32, 0))


def test_subset_focus_matches_full_batch_focus(resnet_model, images):
    with torch.no_grad():
        state = resnet_model.glance(images)
        locs = torch.rand(5, 2, generator=torch.Generator().manual_seed(3))
        full = resnet_model.focus(state, images, locs, 48)
        rows = torch.tensor([3, 0])
        part = resnet_model.focus(state.select(rows), images, locs[rows], 48)
    torch.testing.assert_close(part.logits, full.logits[rows], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(part.policy_hidden, full.policy_hidden[rows], rtol=1e-4, atol=1e-5)


def test_locations_outside_the_unit_square_are_clamped(resnet_model, images):
    with torch.no_grad():
        state = resnet_model.glance(images)
        wild = resnet_model.focus(state, images, torch.tensor([[1.4, -0.3]] * 5), 32)
        edge = resnet_model.focus(state, images, torch.tensor([[1.0, 0.0]] * 5), 32)
    torch.testing.assert_close(wild.logits, edge.logits)


def test_proposal_depends_on_the_next_size_and_gives_a_gaussian(resnet_model, images):
    with torch.no_grad():
        state = resnet_model.glance(images)
        small, large = resnet_model.propose(state, 32), resnet_model.propose(state, 48)
    assert small.mean.shape == (5, 2) and ((small.mean > 0) & (small.mean < 1)).all()
    assert not torch.equal(small.mean, large.mean)
    locs = torch.tensor([[0.2, 0.9]] * 5)
    manual = torch.distributions.Normal(small.mean, 0.1).log_prob(locs).sum(1)
    torch.testing.assert_close(small.distribution().log_prob(locs), manual)
    with torch.no_grad():
        given = resnet_model.focus(state, images, locs, 32, proposal=small)
        computed = resnet_model.focus(state, images, locs, 32)
    torch.testing.assert_close(given.policy_hidden, small.hidden)
    torch.testing.assert_close(computed.logits, given.logits)


def test_training_losses_reach_the_right_parameters(images):
    torch.manual_seed(0)
    model = msgf.build_model("mobilenet_v3_small", num_classes=5, glance_size=32, patch_sizes=[32, 48], T=3).train()
    labels = torch.tensor([0, 1, 2, 3, 4])
    # Stage I: random locations and sizes, CE on every step plus the auxiliary heads.
    state = model.glance(images)
    loss = F.cross_entropy(state.logits, labels) + 0.5 * F.cross_entropy(model.aux_logits(state), labels)
    state = model.focus(state, images, torch.rand(5, 2), [32, 48, 48, 32, 48])
    loss = loss + F.cross_entropy(state.logits, labels) + 0.5 * F.cross_entropy(model.aux_logits(state), labels)
    loss.backward()
    for part in (model.global_encoder, model.local_encoder, *model.classifier.heads[:2]):
        assert all(p.grad is not None for p in part.parameters())
    assert model.classifier.heads[2].weight.grad is None  # the cascade head of step 3 was not run
    assert model.aux_heads[0].weight.grad is not None and model.aux_heads[1].weight.grad is not None
    assert all(p.grad is None for p in model.policy.parameters())
    # Stage II: policy-gradient terms train pi only.
    model.zero_grad(set_to_none=True)
    proposal = model.propose(state, 48)
    locs = proposal.distribution().sample()
    (-(proposal.distribution().log_prob(locs)).mean() + proposal.value.pow(2).mean()).backward()
    assert all(p.grad is not None for p in model.policy.parameters())
    assert all(p.grad is None for p in model.local_encoder.parameters())


def test_state_select_and_cat(resnet_model, images):
    with torch.no_grad():
        state = resnet_model.glance(images)
    mask = torch.tensor([True, False, True, False, False])
    picked = state.select(mask)
    assert len(picked) == 2 and torch.equal(picked.index, torch.tensor([0, 2]))
    both = cat_states([picked, state.select(torch.tensor([4]))])
    assert torch.equal(both.index, torch.tensor([0, 2, 4]))
    torch.testing.assert_close(both.logits, state.logits[[0, 2, 4]])
    with pytest.raises(ValueError, match="rows"):
        state.select(torch.tensor([True]))
    with pytest.raises(TypeError, match="rows"):
        state.select([0, 1])


def test_bad_arguments(resnet_model, images):
    with torch.no_grad():
        state = resnet_model.glance(images)
    with pytest.raises(ValueError, match="sizes"):
        resnet_model.focus(state, images, torch.rand(5, 2), 40)
    with pytest.raises(ValueError, match="sizes"):
        resnet_model.focus(state, images, torch.rand(5, 2), [32, 48])
    with pytest.raises(ValueError, match="locs"):
        resnet_model.focus(state, images, torch.rand(4, 2), 32)
    with pytest.raises(TypeError, match="state"):
        resnet_model.focus(state.logits, images, torch.rand(5, 2), 32)
    with pytest.raises(ValueError, match="proposal"):
        resnet_model.focus(state, images, torch.rand(5, 2), 32, proposal=resnet_model.propose(state, 48))
    with torch.no_grad():
        last = resnet_model.focus(resnet_model.focus(state, images, torch.rand(5, 2), 32), images, torch.rand(5, 2), 32)
    with pytest.raises(ValueError, match="last step"):
        resnet_model.focus(last, images, torch.rand(5, 2), 32)


def test_build_model_validates_and_defaults():
    model = msgf.build_model("mobilenet_v3_small", 3, 32, [64, 32], 2)
    assert model.config.patch_sizes == (32, 64) and model.config.classifier == "fc"
    assert msgf.build_model("resnet18", 3, 32, 32, 2).config.classifier_hidden == 1024
    with pytest.raises(ValueError, match="patch_sizes"):
        msgf.build_model("resnet18", 3, 32, [32, 32], 2)
    with pytest.raises(ValueError, match="T"):
        msgf.build_model("resnet18", 3, 32, [32], 0)
    with pytest.raises(ValueError, match="classifier"):
        msgf.build_model("resnet18", 3, 32, [32], 2, classifier="lstm")
    with pytest.raises(ValueError, match="num_classes"):
        msgf.build_model("resnet18", 1, 32, [32], 2)


def test_forward_runs_the_episode_of_the_step_api(resnet_model, images):
    locs = torch.rand(5, 2, 2, generator=torch.Generator().manual_seed(5))
    sizes = torch.tensor([[32, 48], [48, 48], [32, 32], [48, 32], [32, 48]])
    with torch.no_grad():
        states = resnet_model(images, sizes, locs)
        manual = resnet_model.glance(images)
        for t in range(2):
            manual = resnet_model.focus(manual, images, locs[:, t], sizes[:, t])
        policy_run = resnet_model(images, 48)
        step = resnet_model.focus(resnet_model.glance(images), images,
                                  resnet_model.propose(resnet_model.glance(images), 48).mean, 48)
    assert [s.step for s in states] == [1, 2, 3]
    torch.testing.assert_close(states[-1].logits, manual.logits)
    torch.testing.assert_close(policy_run[1].logits, step.logits)
    with pytest.raises(ValueError, match="sizes"):
        resnet_model(images, [32, 48, 48])
    with pytest.raises(ValueError, match="locs"):
        resnet_model(images, 32, torch.rand(5, 2))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_feature_map_resize_on_the_device_matches_the_host():
    from msgf.models.gfnet import _resize

    fmap = torch.randn(64, 512, 3, 3)
    want = torch.nn.functional.interpolate(fmap, size=(4, 4), mode="bilinear", align_corners=False)
    got = _resize(fmap.cuda(), 4)
    assert got.is_contiguous()
    torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=1e-6)
