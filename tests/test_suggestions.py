"""perceptiq.suggestions.did_you_mean: the one "did you mean" hint of every name lookup."""
from perceptiq.suggestions import did_you_mean


def test_names_the_closest_known_names_first():
    assert did_you_mean("zero-shoot", ["gamma", "zero-shot", "grmp-iqa"]) == " Did you mean 'zero-shot'?"
    assert did_you_mean("ViT-B-61", ["ViT-B-16", "ViT-B-32", "RN50"], n=2) == " Did you mean 'ViT-B-16', 'ViT-B-32'?"
    assert did_you_mean("ViT-B-61", ["ViT-B-16", "ViT-B-32", "RN50"], n=1) == " Did you mean 'ViT-B-16'?"


def test_says_nothing_when_nothing_is_close():
    assert did_you_mean("qwerty", ["gamma", "zero-shot"]) == ""
    assert did_you_mean("gamma", []) == ""
    # a looser cutoff admits a farther name
    assert did_you_mean("gmm", ["gamma"], cutoff=0.9) == ""
    assert did_you_mean("gmm", ["gamma"], cutoff=0.4) == " Did you mean 'gamma'?"


def test_matched_keys_are_shown_by_name_once():
    # lookups that match normalised keys print the real name; two keys of one name give it once
    names = {"koniq10k": "KonIQ-10k", "koniq": "KonIQ-10k", "kadid10k": "KADID-10k"}
    assert did_you_mean("koniq1ok", names, show=names.get) == " Did you mean 'KonIQ-10k', 'KADID-10k'?"
