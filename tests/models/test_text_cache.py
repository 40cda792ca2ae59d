"""TextFeatureCache: computed once per state of its source tensors."""
import torch

from perceptiq.models.text_cache import TextFeatureCache


def test_value_is_reused_until_a_source_is_written_or_replaced():
    cache, calls = TextFeatureCache(), []
    weight = torch.nn.Parameter(torch.ones(3))

    def compute():
        calls.append(1)
        return weight * 2

    first = cache.get("k", [weight], compute)
    assert cache.get("k", [weight], compute) is first and len(calls) == 1
    assert not first.requires_grad                         # made without a graph
    with torch.no_grad():
        weight.mul_(3)                                     # in place: _version moves
    torch.testing.assert_close(cache.get("k", [weight], compute), torch.full((3,), 6.0))
    assert len(calls) == 2
    replaced = torch.nn.Parameter(weight.detach().clone())   # same values, another tensor
    cache.get("k", [replaced], compute)
    assert len(calls) == 3
    cache.clear()
    assert len(cache) == 0


def test_needs_graph_for_trainable_sources_and_torch_func_tensors():
    frozen, trainable = torch.ones(2), torch.ones(2, requires_grad=True)
    assert TextFeatureCache.needs_graph([frozen, trainable])
    assert not TextFeatureCache.needs_graph([frozen])
    with torch.no_grad():
        assert not TextFeatureCache.needs_graph([trainable])
    seen = []
    torch.func.vmap(lambda row: seen.append(TextFeatureCache.needs_graph([row])) or row)(torch.ones(2, 3))
    assert seen == [True]


def test_models_drop_their_cache_on_train_eval_and_to():
    from perceptiq.backbones import create_backbone
    from perceptiq.models.grmp import GRMPModel

    model = GRMPModel(create_backbone("test-tiny", "random"), n_visual_tokens=0).eval()
    pixels = torch.zeros(1, 3, 224, 224)
    for drop in (lambda: model.to(torch.float32), lambda: model.train(), lambda: model.eval()):
        with torch.no_grad():
            model.text_context.ctx.requires_grad_(False)
            model(pixels)
        assert len(model._text_cache) == 1
        drop()
        assert len(model._text_cache) == 0
