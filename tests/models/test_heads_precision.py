"""The score heads compute in fp32 under bf16 autocast (scores keep their resolution)."""
import torch

from perceptiq.heads import antonym_probability, level_expectation


def _features():
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(64, 32, generator=generator).to(torch.bfloat16)     # what a bf16 tower returns
    text = torch.randn(5, 32, generator=generator)
    return image, text


def test_heads_under_bf16_autocast_equal_the_fp32_computation():
    image, text = _features()
    values = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    reference_antonym = antonym_probability(image.float(), text[:1], text[1:2], 5.0)
    reference_levels = level_expectation(image.float(), text, values, 5.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        antonym = antonym_probability(image, text[:1], text[1:2], 5.0)
        levels = level_expectation(image, text, values, 5.0)
    for got, reference in ((antonym, reference_antonym), (levels, reference_levels)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, reference, rtol=1e-6, atol=1e-6)
        # bf16 keeps 8 bits of mantissa: fp32 scores are almost never exactly representable in it
        assert (got.to(torch.bfloat16).float() != got).float().mean() > 0.9
