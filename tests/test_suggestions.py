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


def test_unknown_keys_are_refused_with_hints_and_the_list_only_when_a_hint_is_missing():
    import pytest

    from perceptiq.suggestions import refuse_unknown_keys

    refuse_unknown_keys({"lr": 1, "epochs": 2}, ["lr", "epochs", "seed"], what="setting")   # all known: silent
    with pytest.raises(ValueError) as hinted:
        refuse_unknown_keys({"epoch": 3}, ["lr", "epochs", "seed"], what="training setting", where="train: ")
    assert str(hinted.value) == "train: unknown training setting 'epoch'. Did you mean 'epochs'?"
    with pytest.raises(ValueError) as listed:
        refuse_unknown_keys(["epoch", "qwerty"], ["lr", "epochs"], what="setting")
    assert str(listed.value) == "unknown settings 'epoch'. Did you mean 'epochs'? 'qwerty'. Known: epochs, lr."
