"""LearnableTextContext: CoOp context vectors before the class words (GRMP-IQA section 3.2)."""
import pytest
import torch

from perceptiq.backbones import create_backbone
from perceptiq.prompts import LearnableTextContext


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("test-tiny", "random")


def test_random_init_is_seeded_normal_with_coop_std(backbone):
    context = LearnableTextContext(backbone, n_ctx=4, init="random", seed=3)
    expected = torch.randn(4, 64, generator=torch.Generator().manual_seed(3)) * 0.02
    torch.testing.assert_close(context.ctx.detach(), expected)
    other = LearnableTextContext(backbone, n_ctx=4, init="random", seed=4)
    assert not torch.allclose(context.ctx, other.ctx)


def test_phrase_init_reproduces_the_hand_written_prompt(backbone):
    context = LearnableTextContext(backbone, ["high quality", "low quality"], n_ctx=4, init="a photo of a")
    phrase_tokens = backbone.tokenize(["a photo of a"])[0, 1:5]
    torch.testing.assert_close(context.ctx.detach(), backbone.token_embeddings(phrase_tokens).detach())
    reference = backbone.encode_text(backbone.tokenize(["a photo of a high quality.", "a photo of a low quality."]))
    features = context()
    assert features.shape == (2, backbone.embed_dim)
    torch.testing.assert_close(features, reference, atol=1e-5, rtol=1e-5)


def test_placeholder_prompt_layout(backbone):
    context = LearnableTextContext(backbone, ["high quality", "low quality"], n_ctx=4)
    assert context.prompts == ["X X X X high quality.", "X X X X low quality."]
    embeddings = context.embeddings()
    assert embeddings.shape == (2, 77, 64)
    # rows 1..4 are the shared context, row 5 on are the class words' own embeddings
    torch.testing.assert_close(embeddings[0, 1:5], context.ctx)
    torch.testing.assert_close(embeddings[1, 1:5], context.ctx)
    class_tokens = backbone.tokenize(["X X X X high quality."])[0]
    torch.testing.assert_close(embeddings[0, 5:], backbone.token_embeddings(class_tokens)[5:])


def test_gradient_reaches_only_the_context(backbone):
    context = LearnableTextContext(backbone, n_ctx=4)
    context().sum().backward()
    assert context.ctx.grad is not None and context.ctx.grad.abs().sum() > 0
    assert list(context.state_dict()) == ["ctx"]          # no copy of the backbone's weights
    assert [name for name, _ in context.named_parameters()] == ["ctx"]


def test_bad_init_phrase_and_frozen_random_are_refused(backbone):
    with pytest.raises(ValueError, match="3 tokens long, but n_ctx is 4"):
        LearnableTextContext(backbone, n_ctx=4, init="a good photo")
    with pytest.raises(ValueError, match="frozen random text context"):
        LearnableTextContext(backbone, n_ctx=4, init="random", learnable=False)
    with pytest.raises(ValueError, match="n_ctx"):
        LearnableTextContext(backbone, n_ctx=0)


def test_frozen_phrase_context_is_a_buffer(backbone):
    context = LearnableTextContext(backbone, n_ctx=4, init="a photo of a", learnable=False)
    assert list(context.parameters()) == []
    assert "ctx" in dict(context.named_buffers())


def test_class_words_follow_the_token_table_when_it_is_loaded_or_trained():
    backbone = create_backbone("test-tiny", "random")
    context = LearnableTextContext(backbone, ["high quality", "low quality"], n_ctx=4)
    before = context().detach()
    high = backbone.tokenize(["high"])[0, 1].item()
    with torch.no_grad():
        backbone.clip.token_embedding.weight[high] += 1.0    # as a load_state_dict or a step would
    embedded = context.embeddings()
    torch.testing.assert_close(embedded[0, 5], backbone.clip.token_embedding.weight[high])
    after = context().detach()
    assert not torch.allclose(before[0], after[0])          # "high quality." moved
    torch.testing.assert_close(before[1], after[1])         # "low quality." did not (no "high" token)
    # a trainable table receives the class words' gradient through the context
    backbone.clip.token_embedding.weight.requires_grad_(True)
    context().sum().backward()
    grad = backbone.clip.token_embedding.weight.grad
    assert grad[high].abs().sum() > 0
    assert grad[backbone.tokenize(["X"])[0, 1].item()].abs().sum() == 0   # placeholder rows are replaced
