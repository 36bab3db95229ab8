"""f_C's cascade of linear heads (msgf.models.heads.CascadeClassifier)."""
import torch

from msgf.models.heads import CascadeClassifier


def test_cascade_focus_heads_start_as_the_patch_head():
    torch.manual_seed(0)
    cascade, patch_head = CascadeClassifier(4, 3, steps=3), torch.nn.Linear(4, 3)
    glance_head = [p.clone() for p in cascade.heads[0].parameters()]
    cascade.start_focus_heads_from(patch_head)
    e1, e2, e3 = torch.randn(3, 5, 4)
    memory = cascade.initial_memory(5, e1)
    with torch.no_grad():
        _, memory = cascade(e1, memory, 1)
        logits2, memory = cascade(e2, memory, 2)
        logits3, _ = cascade(e3, memory, 3)
        torch.testing.assert_close(logits2, patch_head(e2))
        torch.testing.assert_close(logits3, (patch_head(e2) + patch_head(e3)) / 2)
    assert all(torch.equal(a, b) for a, b in zip(glance_head, cascade.heads[0].parameters()))
