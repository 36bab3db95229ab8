"""f_C's cascade of linear heads and its max-pooling form (msgf.models.heads)."""
import pytest
import torch

from msgf.models.heads import CascadeClassifier, MaxPoolClassifier


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


@pytest.mark.parametrize("glance_dim", [None, 2])
def test_max_pooling_classifier_reads_the_strongest_evidence_whatever_step_found_it(glance_dim):
    torch.manual_seed(0)
    classifier, patch_head = MaxPoolClassifier(4, 3, glance_dim), torch.nn.Linear(4, 3)
    glance_head = [p.clone() for p in classifier.glance_head.parameters()]
    classifier.start_focus_heads_from(patch_head)
    e2, e3, e4 = torch.randn(3, 5, 4)
    e1 = torch.randn(5, glance_dim or 4)
    with torch.no_grad():
        logits1, memory = classifier(e1, classifier.initial_memory(5, e1), 1)
        torch.testing.assert_close(logits1, classifier.glance_head(e1))
        logits2, memory2 = classifier(e2, memory, 2)
        torch.testing.assert_close(logits2, patch_head(e2))
        logits3, memory3 = classifier(e3, memory2, 3)
        logits4, _ = classifier(e4, memory3, 4)
        torch.testing.assert_close(logits4, patch_head(torch.maximum(torch.maximum(e2, e3), e4)))
        # the order of the focus steps does not matter, and the memory keeps its width
        _, swapped = classifier(e2, classifier(e3, memory, 2)[1], 3)
        torch.testing.assert_close(classifier(e4, swapped, 4)[0], logits4)
        assert memory.shape == memory3.shape == (5, (glance_dim or 4) + 4)
    assert all(torch.equal(a, b) for a, b in zip(glance_head, classifier.glance_head.parameters()))
