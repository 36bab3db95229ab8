"""OutputMemo on a Backbone: answers from memory equal the encoder's own, only for the same input."""
from __future__ import annotations

import copy

import pytest
import torch

from msgf.models.backbones import build_backbone
from msgf.models.memo import OutputMemo


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_backbone("mobilenet_v3_small").eval()


def test_memo_answers_equal_the_encoders_and_count_each_sample(encoder):
    x = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        direct = encoder(x)  # no memo: the oracle
        encoder.memo = OutputMemo()
        try:
            first = encoder(x[:3])
            mixed = encoder(x[[4, 1, 3, 0]])  # 1 and 0 seen, 4 and 3 new
            nudged = encoder(x[:1] + 1e-6)  # a different input is not answered from memory
        finally:
            memo, encoder.memo = encoder.memo, None
    for got, rows in ((first, [0, 1, 2]), (mixed, [4, 1, 3, 0])):
        for part, expected in zip(got, direct):
            torch.testing.assert_close(part, expected[rows], rtol=1e-4, atol=1e-5)
    assert (memo.hits, memo.misses, len(memo)) == (2, 6, 6)
    assert not torch.equal(nudged[1], first[1][:1])


def test_memo_is_skipped_in_training_mode_and_left_out_of_copies(encoder):
    memo = OutputMemo()
    encoder.memo = memo
    try:
        encoder.train()
        with torch.no_grad():
            encoder(torch.randn(2, 3, 64, 64))
        assert memo.misses == 0  # BatchNorm on batch statistics: not a per-sample function
        assert copy.deepcopy(encoder).memo is None
    finally:
        encoder.eval()
        encoder.memo = None


def test_a_full_memo_still_answers_every_input(encoder):
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        direct = encoder(x)
        encoder.memo = OutputMemo(max_bytes=0)
        try:
            got = encoder(x)
        finally:
            memo, encoder.memo = encoder.memo, None
    assert len(memo) == 0 and memo.bytes == 0
    torch.testing.assert_close(got[1], direct[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [-1, 1.5, "1G"])
def test_memo_rejects_a_bad_size(bad):
    with pytest.raises(ValueError, match="max_bytes"):
        OutputMemo(max_bytes=bad)
