import numpy as np
import pytest
import torch

import msgf.ops
from msgf.engine import Thresholds, anytime, predict


def test_thresholds_fixture_mixes_exits_and_sizes(model, images, thresholds):
    out = predict(model, images, thresholds)
    # The checks below are only meaningful if samples really take different routes.
    assert len(set(out.exit_step.tolist())) >= 2 and {32, 48} <= set(out.sizes[:, 1].tolist())


def test_predictions_follow_eq9_through_the_exported_tree(model, images, thresholds, trajectory, eq9_rule):
    _, data, _ = trajectory
    out = predict(model, images, thresholds)
    K, T, sizes = 2, 3, [32, 48]
    for i in range(len(images)):
        node, start, path = 0, 0, []
        for t in range(1, T + 1):
            k = eq9_rule(thresholds.eta[t - 1], float(data["conf"][i, node])) if t < T else -1
            if k == -1:
                break
            path.append(k)
            node, start = start + K ** (t - 1) + (node - start) * K + k, start + K ** (t - 1)
        assert out.exit_step[i] == t
        assert out.pred[i] == data["pred"][i, node]
        assert out.conf[i] == pytest.approx(float(data["conf"][i, node]), rel=1e-5)
        assert out.macs[i] == data["macs"][node] == model.path_macs([sizes[k] for k in path])
        assert out.sizes[i].tolist() == [32] + [sizes[k] for k in path] + [0] * (T - 1 - len(path))
        assert torch.isnan(out.locs[i, 0]).all() and torch.isnan(out.locs[i, len(path) + 1:]).all()
        assert ((out.locs[i, 1:len(path) + 1] >= 0) & (out.locs[i, 1:len(path) + 1] <= 1)).all()


def test_a_sample_gets_the_same_result_alone_as_in_the_batch(model, images, thresholds):
    batch = predict(model, images, thresholds)
    for i in range(len(images)):
        alone = predict(model, images[i:i + 1], thresholds)
        for name in ("pred", "exit_step", "sizes", "macs"):
            assert torch.equal(getattr(alone, name)[0], getattr(batch, name)[i]), name
        # Matrix products may round differently for another batch size (1 ulp seen), so the
        # float locations agree to 1e-6 and the pixel positions they select exactly.
        torch.testing.assert_close(alone.locs[0], batch.locs[i], equal_nan=True, rtol=0, atol=1e-6)
        steps = alone.sizes[0, 1:] > 0
        pixel = [msgf.ops.focus_boxes(out.locs[j, 1:][steps], out.sizes[j, 1:][steps], (70, 90))
                 for out, j in ((alone, 0), (batch, i))]
        assert torch.equal(pixel[0], pixel[1])
        torch.testing.assert_close(alone.logits[0], batch.logits[i], rtol=1e-4, atol=1e-5)


def test_one_crop_call_per_focus_step_with_the_batch_shrinking(model, images, thresholds, monkeypatch):
    calls = []
    real = msgf.ops.crop_resize

    def spy(imgs, boxes, out_sizes, **kwargs):
        calls.append((boxes[:, 0].long().tolist(), torch.as_tensor(out_sizes).tolist()))
        return real(imgs, boxes, out_sizes, **kwargs)

    monkeypatch.setattr(msgf.ops, "crop_resize", spy)
    out = predict(model, images, thresholds)
    assert len(calls) == int(out.exit_step.max()) - 1
    for t, (rows, sides) in enumerate(calls, start=2):
        assert sorted(rows) == torch.nonzero(out.exit_step >= t).squeeze(1).tolist()
        assert sides == out.sizes[rows, t - 1].tolist()


def test_anytime_runs_every_sample_for_every_step(model, images, trajectory, node_of):
    _, data, _ = trajectory
    out = anytime(model, images, 48)
    columns = [0, node_of((1,), 2), node_of((1, 1), 2)]
    np.testing.assert_allclose(out.conf.numpy(), data["conf"][:, columns], rtol=1e-5, atol=1e-6)
    assert np.array_equal(out.pred.numpy(), data["pred"][:, columns])
    assert out.macs.tolist() == data["macs"][columns].tolist()
    assert torch.isnan(out.locs[:, 0]).all() and not torch.isnan(out.locs[:, 1:]).any()


def test_never_exit_until_the_last_step_and_always_exit_at_the_glance(model, images):
    never = predict(model, images, Thresholds([[np.inf, 0.0], [np.inf, 0.0]]))
    assert never.exit_step.tolist() == [3] * 9 and (never.sizes[:, 1:] == 32).all()
    always = predict(model, images, Thresholds([[-np.inf, -np.inf], [0.0, 0.0]]))
    assert always.exit_step.tolist() == [1] * 9 and (always.macs == model.step_macs(1)).all()


def test_bad_arguments(model, images):
    with pytest.raises(ValueError, match="model needs"):
        predict(model, images, Thresholds([[0.5]]))
    with pytest.raises(TypeError, match="thresholds"):
        predict(model, images, [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="size"):
        anytime(model, images)
    with pytest.raises(ValueError, match="size"):
        anytime(model, images, 40)
    model.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            predict(model, images, Thresholds([[0.5, 0.5], [0.5, 0.5]]))
    finally:
        model.eval()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_device_takes_the_same_routes_as_the_host(model, images, thresholds, monkeypatch):
    import copy

    # TF32 convolutions round to 10 mantissa bits, enough to move a confidence across a
    # threshold; the comparison is of the engine, not of TF32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    host = predict(model, images, thresholds)
    device = predict(copy.deepcopy(model).cuda(), images.cuda(), thresholds)
    assert device.pred.is_cuda
    for name in ("pred", "exit_step", "sizes", "macs", "step_pred"):
        assert torch.equal(getattr(device, name).cpu(), getattr(host, name)), name
    for name in ("conf", "step_conf", "locs", "logits"):
        torch.testing.assert_close(getattr(device, name).cpu(), getattr(host, name), rtol=1e-4, atol=1e-5,
                                   equal_nan=True)
