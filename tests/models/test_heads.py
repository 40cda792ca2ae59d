"""Gamma's head, worked by hand: Eq. 1 (level expectation) and the adapter, with numbers written out here
(no call to the code under test builds an expected value)."""
from __future__ import annotations

import math

import pytest
import torch

from perceptiq.heads import level_expectation
from perceptiq.heads.adapter import Adapter


def test_eq1_level_expectation_by_hand():
    """Image I = (1, 0); level prompts T_k = (c_k, sqrt(1 - c_k^2)) with cosines c = (0, 1/4, 1/2, 3/4, 1);
    1/tau = 4 ln 2, so the logits are (0, 1, 2, 3, 4) ln 2 and the softmax is (1, 2, 4, 8, 16) / 31.
    With C = (0.2, 0.4, 0.6, 0.8, 1.0): q = (0.2 + 0.8 + 2.4 + 6.4 + 16) / 31 = 25.8 / 31 = 0.83225806."""
    cosines = [0.0, 0.25, 0.5, 0.75, 1.0]
    text = torch.tensor([[c, math.sqrt(1 - c * c)] for c in cosines])
    image = torch.tensor([[1.0, 0.0]])
    values = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0])
    inv_tau = 4 * math.log(2)
    assert level_expectation(image, text, values, inv_tau).item() == pytest.approx(25.8 / 31, abs=1e-6)
    # features are L2-normalised inside: scaling either side changes nothing
    assert level_expectation(3 * image, 2 * text, values, inv_tau).item() == pytest.approx(25.8 / 31, abs=1e-6)
    # per-image prompt sets [B,K,D]: the second image reads the prompts in reverse order, so its softmax is
    # (16, 8, 4, 2, 1) / 31 and q = (3.2 + 3.2 + 2.4 + 1.6 + 1.0) / 31 = 11.4 / 31 = 0.36774194
    per_image = torch.stack([text, text.flip(0)])
    got = level_expectation(image.repeat(2, 1), per_image, values, inv_tau)
    torch.testing.assert_close(got, torch.tensor([25.8 / 31, 11.4 / 31]), rtol=0, atol=1e-6)
    # C = (0, 1/4, 1/2, 3/4, 1) and a huge 1/tau: the score is the best-matching level's value, 1.0
    assert level_expectation(image, text, torch.tensor(cosines), 1e4).item() == pytest.approx(1.0, abs=1e-6)


def test_adapter_by_hand():
    """width 2, hidden 2. x = (1, 2); down: W = [[1, -1], [2, 0]], b = (0, -1) -> (-1, 1); ReLU -> (0, 1);
    up: W = [[1, 3], [-2, 0.5]], b = (0.1, 0) -> (3.1, 0.5). Residual: x + that = (4.1, 2.5)."""
    for residual, expected in ((True, [4.1, 2.5]), (False, [3.1, 0.5])):
        adapter = Adapter(2, 2, residual=residual)
        with torch.no_grad():
            adapter.down.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0]]))
            adapter.down.bias.copy_(torch.tensor([0.0, -1.0]))
            adapter.up.weight.copy_(torch.tensor([[1.0, 3.0], [-2.0, 0.5]]))
            adapter.up.bias.copy_(torch.tensor([0.1, 0.0]))
        got = adapter(torch.tensor([[1.0, 2.0]]))
        torch.testing.assert_close(got, torch.tensor([expected]), rtol=0, atol=1e-6)


def test_adapter_starts_as_the_identity_and_has_table_5s_parameter_count():
    x = torch.randn(4, 512, generator=torch.Generator().manual_seed(0))
    assert torch.equal(Adapter(512)(x), x)                    # residual, output layer zero: I' = I at step 0
    assert not torch.allclose(Adapter(512, residual=False)(x), x)
    # 512 -> 256 -> 512 with biases: 512*256 + 256 + 256*512 + 512 = 262,912 (docs/gamma.md, Table 5)
    assert sum(p.numel() for p in Adapter(512).parameters()) == 262_912
