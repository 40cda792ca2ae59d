"""The Ray Data engine gives the local engine's rows (same paths, scores, error rows), to shards or a file.

One local Ray (2 CPUs) serves the whole module; the engine attaches to it instead of starting its own.
"""
from __future__ import annotations

import importlib.util

import pytest

from perceptiq.inference import load_model, read_result_rows, score_paths
from perceptiq.inference.images import error_reason
from perceptiq.inference.ray_engine import ActorPlan, output_kind, plan_actors

from ..conftest import textured_image

MODEL = {"model": "zero-shot", "backbone": "test-tiny", "weights": "random"}
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (optional extra: pip install 'perceptiq[ray]')")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 inputs: 11 images (JPEG and PNG, some in a subfolder) and one corrupt file."""
    root = tmp_path_factory.mktemp("ray_images")
    (root / "sub").mkdir()
    for i in range(11):
        name = f"sub/im{i:02d}.png" if i % 3 == 0 else f"im{i:02d}.jpg"
        textured_image(i, (90 + 7 * i, 80)).save(root / name)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    return root


@pytest.fixture(scope="module")
def local_rows(folder):
    assessor = load_model(**MODEL, device="cpu", precision="fp32")
    return {r["path"]: r for r in score_paths(assessor, [str(folder)], num_workers=0, progress=False)}


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra: pip install 'perceptiq[ray]')")
    from perceptiq.inference.ray_engine import connect

    assert connect(num_cpus=2)
    yield ray
    ray.shutdown()


def _assert_same_rows(rows: dict, reference: dict) -> None:
    assert set(rows) == set(reference) and len(reference) == 12
    for path, expected in reference.items():
        got = rows[path]
        assert got["error"] == expected["error"], path
        if expected["score"] is None:
            assert got["score"] is None, path
        else:
            assert got["score"] == pytest.approx(expected["score"], abs=1e-5), path
    assert sum(r["error"] is not None for r in rows.values()) == 1


@needs_ray
def test_parquet_shards_equal_the_local_engine(ray_session, folder, local_rows, tmp_path):
    from perceptiq.inference.ray_engine import read_shards, score_with_ray

    out = tmp_path / "shards"
    summary = score_with_ray([str(folder)], **MODEL, device="cpu", precision="fp32", batch_size=4, output=out)
    columns = read_shards(out, "parquet")
    assert list(columns) == ["path", "score", "error"]
    rows = {path: {c: columns[c][i] for c in columns} for i, path in enumerate(columns["path"])}
    _assert_same_rows(rows, local_rows)
    assert (summary.n_scored, summary.n_failed) == (11, 1)
    local_errors = [r["error"] for r in local_rows.values() if r["error"]]
    assert summary.failures_by_reason == {error_reason(local_errors[0]): 1}


@needs_ray
def test_csv_file_output_equals_the_local_engine(ray_session, folder, local_rows, tmp_path):
    from perceptiq.inference.ray_engine import score_with_ray

    out = tmp_path / "scores.csv"
    score_with_ray([str(folder)], **MODEL, device="cpu", precision="fp32", batch_size=5, output=out)
    rows = read_result_rows(out)
    assert len(rows) == len({r["path"] for r in rows})          # one row per input
    _assert_same_rows({r["path"]: r for r in rows}, local_rows)


@needs_ray
def test_a_non_empty_shard_folder_is_refused(ray_session, folder, tmp_path):
    from perceptiq.inference.ray_engine import score_with_ray

    (tmp_path / "old.parquet").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not empty"):
        score_with_ray([str(folder)], **MODEL, device="cpu", output=tmp_path)


@needs_ray
def test_resume_of_a_shard_folder_scores_only_the_rest(ray_session, folder, local_rows, tmp_path):
    """A stopped run left shards for 5 inputs and one shard cut mid-write: resuming reads the good shards,
    drops the broken one, scores the 7 others into new shards; every input ends with exactly one row."""
    from perceptiq.inference.ray_engine import read_shards, score_with_ray

    out, inputs = tmp_path / "shards", sorted(local_rows)
    score_with_ray(inputs[:5], **MODEL, device="cpu", precision="fp32", batch_size=4, output=out)
    broken = out / "zz-killed-mid-write.parquet"
    broken.write_bytes(b"PAR1 and then the writer was killed")
    summary = score_with_ray([str(folder)], **MODEL, device="cpu", precision="fp32", batch_size=4, output=out,
                             resume=True)
    assert summary.n_skipped == 5 and summary.n_scored + summary.n_failed == 7
    columns = read_shards(out, "parquet")
    assert len(columns["path"]) == len(set(columns["path"])) == 12            # none twice, none lost
    _assert_same_rows({p: {c: columns[c][i] for c in columns} for i, p in enumerate(columns["path"])}, local_rows)
    assert not broken.exists()
    nothing_left = score_with_ray([str(folder)], **MODEL, device="cpu", output=out, resume=True)
    assert (nothing_left.n_skipped, nothing_left.n_scored, nothing_left.n_failed) == (12, 0, 0)


@needs_ray
def test_resume_of_a_csv_file_cut_mid_row_appends_only_the_rest(ray_session, folder, local_rows, tmp_path):
    from perceptiq.inference.ray_engine import score_with_ray

    out, inputs = tmp_path / "scores.csv", sorted(local_rows)
    score_with_ray(inputs[:6], **MODEL, device="cpu", precision="fp32", batch_size=4, output=out)
    with open(out, "a") as handle:
        handle.write(f"{inputs[6]},0.12")                     # the row the kill cut short
    summary = score_with_ray([str(folder)], **MODEL, device="cpu", precision="fp32", batch_size=4, output=out,
                             resume=True)
    assert summary.n_skipped == 6
    rows = read_result_rows(out)
    assert len(rows) == len({r["path"] for r in rows}) == 12
    _assert_same_rows({r["path"]: r for r in rows}, local_rows)


@pytest.mark.parametrize("output, message", [
    (None, "resume needs an output"),
    ("scores.parquet", "single Parquet file is unreadable until"),
    ("s3://bucket/run", "not an object-store URI"),
])
def test_resume_is_refused_where_the_done_paths_cannot_be_read(folder, output, message):
    from perceptiq.inference.ray_engine import score_with_ray

    with pytest.raises(ValueError, match=message):     # before the model is built or Ray started
        score_with_ray([str(folder)], **MODEL, output=output, resume=True)


def test_actor_plan_one_per_gpu_else_a_small_cpu_pool():
    assert plan_actors({"CPU": 64, "GPU": 8}) == ActorPlan(8, num_gpus=1, num_cpus=1, device="cuda")
    assert plan_actors({"CPU": 64, "GPU": 8}, device="cpu").num_gpus == 0
    assert plan_actors({"CPU": 2}) == ActorPlan(1, num_gpus=0, num_cpus=1, device="cpu")
    assert plan_actors({"CPU": 32}).n_actors == 4
    with pytest.raises(ValueError, match="no GPUs"):
        plan_actors({"CPU": 8}, device="cuda")


def test_output_kind_by_suffix():
    assert output_kind(None) == "table"
    assert output_kind("a/scores.csv") == "csv" and output_kind("s.PARQUET") == "parquet"
    assert output_kind("results") == "shards" and output_kind("results.csv/") == "shards"
    with pytest.raises(ValueError, match="single .csv file"):
        output_kind("scores.csv", "parquet")
