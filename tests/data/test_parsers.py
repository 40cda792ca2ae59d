"""Every native parser against a tiny replica of its release, plus the errors a user
meets: a malformed row (file and row named), a missing file (file and root named), a
misspelt dataset name (did you mean), and the generic CSV."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

sys.path.insert(0, str(Path(__file__).parent))
from replicas import BUILDERS, build, write_csv, write_image, write_lines, write_xlsx  # noqa: E402

from perceptiq.data import (  # noqa: E402
    DatasetFormatError,
    describe_datasets,
    get_dataset_spec,
    list_datasets,
    load_dataset,
    load_generic_csv,
)


def observed(dataset, root: Path) -> list[tuple]:
    return [(s.path.relative_to(root).as_posix(), s.label, s.score, s.ref, s.distortion, s.level) for s in dataset]


def assert_matches(dataset, replica) -> None:
    got = observed(dataset, replica.root.resolve())
    assert [g[0] for g in got] == [e.path for e in replica.expected]
    for (path, label, score, ref, distortion, level), want in zip(got, replica.expected):
        if math.isnan(want.label):
            assert math.isnan(label) and math.isnan(score), path
        else:
            assert label == pytest.approx(want.label), path
            assert score == pytest.approx(want.score), path
        assert (ref, distortion, level) == (want.ref, want.distortion, want.level), path


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_parser_reads_native_replica(name, tmp_path):
    replica = build(name, tmp_path)
    dataset = load_dataset(name, replica.root, **replica.options)
    assert_matches(dataset, replica)
    spec = get_dataset_spec(name)
    assert all(s.dataset == spec.name and s.scene == spec.scene for s in dataset)
    scale = spec.column(replica.options.get("column")).scale
    # scores lie in [0, 1] except for labels past a nominal range (LIVE's realigned DMOS above 100)
    assert all(0.0 <= s.score <= 1.0 for s in dataset if not math.isnan(s.score) and scale.contains(s.label))


def test_every_native_parser_has_a_replica():
    native = {spec.name for spec in list_datasets() if spec.parser is not None}
    assert native == set(BUILDERS)


def test_synthetic_datasets_carry_ref_and_distortion(tmp_path):
    for spec in list_datasets():
        if spec.synthetic:
            dataset = load_dataset(spec.name, build(spec.name, tmp_path).root)
            assert all(s.ref and s.distortion for s in dataset), spec.name


def test_tid2013_matches_names_whatever_their_case(tmp_path):
    replica = build("tid2013", tmp_path)
    paths = [s.path.name for s in load_dataset("TID2013", replica.root)]
    assert paths == ["I01_01_1.BMP", "i01_02_5.bmp", "i25_24_3.BMP"]


def test_dmos_is_flipped_so_lower_dmos_scores_higher(tmp_path):
    csiq = load_dataset("csiq", build("csiq", tmp_path).root)
    by_label = sorted(csiq, key=lambda s: s.label)
    assert [s.score for s in by_label] == sorted((s.score for s in csiq), reverse=True)


def test_live_original_dmos_column_on_table_9s_nominal_range(tmp_path, caplog):
    root = build("live", tmp_path).root
    with caplog.at_level("WARNING"):
        dataset = load_dataset("live", root, column="dmos")  # dmos.mat holds realigned + 1 in the replica
    assert [s.label for s in dataset] == [31.0, 56.5, 105.5]
    # Table 9's [1, 100], DMOS flipped: 1 - (label - 1) / 99, by hand; 105.5 is past 100 and kept
    assert [s.score for s in dataset] == pytest.approx([0.6969697, 0.4393939, -0.0555556], abs=1e-7)
    assert "1 label(s) of column 'dmos' lie outside its nominal range [1, 100] (from 105.5 to 105.5)" in caplog.text


def test_koniq_other_column_and_image_folder(tmp_path):
    root = build("koniq10k", tmp_path).root
    for name in ("10004473376.jpg", "10007357496.jpg"):
        write_image(root / "512x384" / name)
    dataset = load_dataset("koniq", root, column="MOS", images="512x384")
    assert [s.label for s in dataset] == pytest.approx([3.828571, 3.479167])
    assert [s.score for s in dataset] == pytest.approx([(3.828571 - 1) / 4, (3.479167 - 1) / 4])
    assert all(s.path.parent.name == "512x384" for s in dataset)


def test_agiqa3k_alignment_column(tmp_path):
    dataset = load_dataset("agiqa3k", build("agiqa3k", tmp_path).root, column="align")
    aligned = [0.40889324, 2.0, 4.1]
    assert [s.label for s in dataset] == pytest.approx(aligned)
    assert [s.score for s in dataset] == pytest.approx([(a - min(aligned)) / (max(aligned) - min(aligned))
                                                        for a in aligned])


def test_livec_drops_the_seven_training_images_unless_asked(tmp_path):
    root = build("livec", tmp_path).root
    assert len(load_dataset("clive", root)) == 2
    with_training = load_dataset("live-challenge", root, include_training_images=True)
    assert len(with_training) == 9
    assert with_training[0].path.relative_to(root.resolve()).as_posix() == "Images/trainingImages/t1.bmp"


# --- errors -------------------------------------------------------------------------

def test_malformed_text_row_names_file_and_row(tmp_path):
    root = build("tid2013", tmp_path).root
    write_lines(root / "mos_with_names.txt", ["5.5 i01_01_1.bmp", "abc i01_02_5.bmp"])
    with pytest.raises(DatasetFormatError, match=r"mos_with_names\.txt row 2.*'abc'"):
        load_dataset("tid2013", root)


def test_malformed_csv_row_names_file_and_row(tmp_path):
    root = build("kadid10k", tmp_path).root
    write_csv(root / "dmos.csv", ["dist_img", "ref_img", "dmos", "var"],
              [["I01_01_01.png", "I01.png", 4.57, 0.4], ["I01_01_02.png", "I01.png", "", 0.4]])
    with pytest.raises(DatasetFormatError, match=r"dmos\.csv row 3 column 'dmos'"):
        load_dataset("kadid10k", root)


def test_malformed_xlsx_row_names_sheet_and_row(tmp_path):
    root = build("csiq", tmp_path).root
    header = [None, None, None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    write_xlsx(root / "csiq.DMOS.xlsx",
               [[None], [None], [None], header, [None, None, None, 1600, 1, "noise", 1, 0.01, "n/a"]],
               sheet="all_by_image")
    with pytest.raises(DatasetFormatError, match=r"csiq\.DMOS\.xlsx sheet 'all_by_image' row 5 column 'dmos'"):
        load_dataset("csiq", root)


def test_malformed_mat_names_file_and_variable(tmp_path):
    root = build("aigciqa2023", tmp_path).root
    savemat(root / "DATA" / "MOS" / "mosz1.mat", {"scores": np.ones((3, 1))})
    with pytest.raises(DatasetFormatError, match=r"mosz1\.mat: no variable 'MOSz'"):
        load_dataset("aigciqa2023", root)


def test_ava_row_with_wrong_field_count(tmp_path):
    root = build("ava", tmp_path).root
    write_lines(root / "AVA.txt", ["1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396", "2 953958 10 7"])
    with pytest.raises(DatasetFormatError, match=r"AVA\.txt row 2: 4 fields"):
        load_dataset("ava", root)


def test_label_outside_fixed_range_names_row(tmp_path):
    root = build("spaq", tmp_path).root
    write_xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx",
               [["Image name", "MOS"], ["00001.jpg", 42.0], ["00002.jpg", 142.0]])
    with pytest.raises(DatasetFormatError, match=r"row 3: label 142 outside the spaq range \[0, 100\]"):
        load_dataset("spaq", root)


def test_missing_label_file_names_file_and_root(tmp_path):
    root = build("koniq10k", tmp_path).root
    (root / "koniq10k_scores_and_distributions.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"koniq10k_scores_and_distributions\.csv.*under root") as error:
        load_dataset("koniq10k", root)
    assert str(root.resolve()) in str(error.value)


def test_missing_image_names_image_root_and_label_row(tmp_path):
    root = build("livefb", tmp_path).root
    (root / "database" / "AVA__149.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"database/AVA__149\.jpg.*labels_image\.csv row 3") as error:
        load_dataset("livefb", root)
    assert str(root.resolve()) in str(error.value)


def test_missing_images_can_be_skipped_and_are_reported(tmp_path):
    root = build("ava", tmp_path).root
    (root / "images" / "953958.jpg").unlink()
    dataset = load_dataset("ava", root, missing="skip")
    assert [s.path.name for s in dataset] == ["953619.jpg"]
    assert dataset.skipped == ("images/953958.jpg",)


def test_check_files_false_keeps_paths_as_written(tmp_path):
    root = build("kadid10k", tmp_path).root
    (root / "images" / "I02_25_05.png").unlink()
    dataset = load_dataset("kadid10k", root, check_files=False)
    assert dataset[1].path == root.resolve() / "images" / "I02_25_05.png"


def test_misspelt_name_suggests_the_right_one():
    with pytest.raises(KeyError, match="Did you mean 'koniq10k'"):
        get_dataset_spec("konig10k")


def test_aliases_and_spelling_variants_resolve():
    assert get_dataset_spec("CLIVE").name == "livec"
    assert get_dataset_spec("KonIQ-10k").name == "koniq10k"
    assert get_dataset_spec("kadid_10k").name == "kadid10k"


def test_unknown_option_is_rejected(tmp_path):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['colum'\]"):
        load_dataset("spaq", build("spaq", tmp_path).root, colum="mos")


def test_unknown_column_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"no label column 'zscore'.*mos_zscore, mos"):
        load_dataset("koniq10k", build("koniq10k", tmp_path).root, column="zscore")


def test_expected_counts_follow_the_papers():
    counts = {s.name: s.expected_count for s in list_datasets()}
    assert counts["live"] == 779 and counts["csiq"] == 866 and counts["tid2013"] == 3000
    assert counts["kadid10k"] == 10125 and counts["spaq"] == 11125 and counts["livec"] == 1162
    assert counts["koniq10k"] == 10073 and counts["livefb"] == 39810 and counts["pipal"] == 23200


# --- generic CSV --------------------------------------------------------------------

def test_generic_csv_round_trip(tmp_path):
    write_image(tmp_path / "imgs" / "A.PNG")
    write_image(tmp_path / "imgs" / "b.jpg")
    write_csv(tmp_path / "labels.csv", ["path", "score", "ref", "distortion", "level", "scene"],
              [["imgs/a.png", 20, "r1", "blur", 2, "face"], ["imgs/b.jpg", 80, "", "", "", ""]])
    dataset = load_generic_csv(tmp_path / "labels.csv", score_range=(0, 100), higher_is_better=False, name="mine")
    assert [s.path for s in dataset] == [tmp_path.resolve() / "imgs" / "A.PNG", tmp_path.resolve() / "imgs" / "b.jpg"]
    assert [s.label for s in dataset] == [20.0, 80.0]
    assert [s.score for s in dataset] == pytest.approx([0.8, 0.2])
    assert (dataset[0].ref, dataset[0].distortion, dataset[0].level, dataset[0].scene) == ("r1", "blur", 2, "face")
    assert (dataset[1].ref, dataset[1].scene, dataset[1].dataset) == (None, "natural", "mine")


def test_generic_csv_without_range_uses_file_min_max(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / name)
    write_csv(tmp_path / "l.csv", ["path", "score"], [["a.png", 2], ["b.png", 4], ["c.png", 3]])
    assert [s.score for s in load_generic_csv(tmp_path / "l.csv")] == pytest.approx([0.0, 1.0, 0.5])
    assert [s.score for s in load_dataset("csv", tmp_path / "l.csv")] == pytest.approx([0.0, 1.0, 0.5])


def test_generic_csv_errors_name_file_and_row(tmp_path):
    write_image(tmp_path / "a.png")
    write_csv(tmp_path / "l.csv", ["path", "score"], [["a.png", 2], ["a.png", "x"]])
    with pytest.raises(DatasetFormatError, match=r"l\.csv row 3 column 'score'"):
        load_generic_csv(tmp_path / "l.csv")
    write_csv(tmp_path / "l.csv", ["path", "score", "scroe"], [["a.png", 2, 1]])
    with pytest.raises(DatasetFormatError, match=r"unknown columns \['scroe'\]"):
        load_generic_csv(tmp_path / "l.csv")
    write_csv(tmp_path / "l.csv", ["path", "score"], [["a.png", 2], ["a.png", 7]])
    with pytest.raises(DatasetFormatError, match=r"l\.csv row 3: label 7 outside"):
        load_generic_csv(tmp_path / "l.csv", score_range=(1, 5))
    write_csv(tmp_path / "l.csv", ["path", "score"], [["nothere.png", 2]])
    with pytest.raises(FileNotFoundError, match=r"'nothere\.png'.*l\.csv row 2"):
        load_generic_csv(tmp_path / "l.csv")


def test_csv_only_dataset_reads_a_generic_csv_with_its_own_range_and_scene(tmp_path):
    write_image(tmp_path / "face1.png")
    write_csv(tmp_path / "gfiqa.csv", ["path", "score"], [["face1.png", 0.75]])
    dataset = load_dataset("GFIQA-20k", tmp_path / "gfiqa.csv")
    assert (dataset[0].score, dataset[0].scene, dataset[0].dataset) == (0.75, "face", "gfiqa20k")
    with pytest.raises(ValueError, match=r"uwiqa: no native parser"):
        load_dataset("uwiqa", tmp_path)


def test_describe_lists_every_dataset_and_the_csv_only_ones():
    text = describe_datasets()
    for spec in list_datasets():
        assert f"\n{spec.name}" in text
    assert "--data NAME=ROOT" in text and "--dataset" not in text
    csv_only_line = next(line for line in text.splitlines() if line.startswith("Read via generic CSV only"))
    assert all(name in csv_only_line for name in ("gfiqa20k", "uwiqa", "exbedde", "eciqad"))
