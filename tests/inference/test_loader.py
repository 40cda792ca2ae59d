"""iter_image_files (listing order, extensions, dedup, missing paths) and the scoring DataLoader
(input order kept, errors in place, workers survive bad files)."""
import functools
import os

import numpy as np
import pytest
import torch
from PIL import Image

from perceptiq.inference.files import iter_image_files
from perceptiq.inference.images import ImageDecodeError, clip_preprocess, load_rgb
from perceptiq.inference.loader import (
    ImagePathDataset,
    ScoringBatch,
    MAX_AUTO_WORKERS,
    DecodePlan,
    InProcessScoringLoader,
    auto_decode_plan,
    auto_num_workers,
    collate_scoring_batch,
    make_scoring_loader,
)

PREPROCESS = functools.partial(clip_preprocess, size=16)


def save_image(path, size=(20, 12), colour=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


# ------------------------------------------------------------------------------- file listing

def test_folder_walk_is_sorted_depth_first_and_filters_extensions(tmp_path):
    root = tmp_path / "photos"
    for name in ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tiff", "a2/e.jpeg", "z.bmp"]:
        save_image(root / name)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(b"x")
    (root / "._a.JPG").write_bytes(b"macos resource fork")
    (root / ".cache").mkdir()
    save_image(root / ".cache" / "thumb.png")

    listed = [p.relative_to(root).as_posix() for p in iter_image_files([root])]
    assert listed == ["a.JPG", "a2/e.jpeg", "b.png", "sub/c.webp", "sub/deeper/d.tiff", "z.bmp"]

    shallow = [p.name for p in iter_image_files([root], recursive=False)]
    assert shallow == ["a.JPG", "b.png", "z.bmp"]

    only_png = [p.name for p in iter_image_files([root], extensions=["PNG"])]
    assert only_png == ["b.png"]


def test_explicit_files_are_kept_in_order_even_unknown_or_missing(tmp_path):
    odd = tmp_path / "scan.raw"
    odd.write_bytes(b"raw bytes")
    good = save_image(tmp_path / "x.png")
    missing = tmp_path / "gone.jpg"
    listed = list(iter_image_files([odd, str(missing), good]))
    assert listed == [odd, missing, good]


def test_duplicates_are_yielded_once_first_occurrence_wins(tmp_path):
    root = tmp_path / "set"
    first = save_image(root / "one.png")
    save_image(root / "two.png")
    alias = tmp_path / "link.png"
    os.symlink(first, alias)
    listed = list(iter_image_files([first, root, root / ".." / "set" / "two.png", alias, root]))
    assert listed == [first, root / "two.png"]


def test_symlinked_folder_cycle_terminates(tmp_path):
    root = tmp_path / "loop"
    save_image(root / "a.png")
    os.symlink(root, root / "again")
    assert [p.name for p in iter_image_files([root])] == ["a.png"]


def test_extensions_must_be_a_collection(tmp_path):
    with pytest.raises(TypeError, match="not one string"):
        list(iter_image_files([tmp_path], extensions=".jpg"))


# -------------------------------------------------------------------------------------- loader

@pytest.fixture
def mixed_inputs(tmp_path):
    """Good and bad inputs interleaved, with the expected error reason (None = good) for each."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    inputs = [
        (save_image(tmp_path / "g0.png", (20, 12), (200, 0, 0)), None),
        (empty, "empty file"),
        (save_image(tmp_path / "g1.png", (13, 31), (0, 200, 0)), None),
        (tmp_path / "missing.jpg", "file not found"),
        (save_image(tmp_path / "g2.png", (40, 40), (0, 0, 200)), None),
        (text, "not an image"),
        (save_image(tmp_path / "g3.png", (9, 9), (50, 60, 70)), None),
    ]
    return [str(p) for p, _ in inputs], [reason for _, reason in inputs]


def run_loader(paths, **kwargs):
    """Score each decoded image by the mean of its pixels; returns (index, path, score, error) rows."""
    rows = []
    for batch in make_scoring_loader(paths, preprocess=PREPROCESS, **kwargs):
        assert isinstance(batch, ScoringBatch)
        scores = batch.pixels.mean(dim=(1, 2, 3)).tolist()
        rows.extend(batch.results(scores))
    return rows


def reference_rows(paths):
    rows = []
    for index, path in enumerate(paths):
        try:
            rows.append((index, path, PREPROCESS(load_rgb(path)).mean().item(), None))
        except ImageDecodeError as err:
            rows.append((index, path, None, str(err)))
    return rows


@pytest.mark.parametrize("num_workers, decode_threads", [(0, 1), (0, 3), (2, None)])
def test_loader_keeps_input_order_with_errors_in_place(mixed_inputs, num_workers, decode_threads):
    paths, reasons = mixed_inputs
    rows = run_loader(paths, batch_size=3, num_workers=num_workers, decode_threads=decode_threads)
    expected = reference_rows(paths)
    assert [r[:2] for r in rows] == [(i, p) for i, p in enumerate(paths)]
    assert [r[3] for r in rows] == [e[3] for e in expected]
    assert [r[3] for r in rows] == reasons
    for got, want in zip(rows, expected):
        if want[2] is None:
            assert got[2] is None
        else:
            assert got[2] == pytest.approx(want[2], abs=1e-6)


def test_worker_survives_a_preprocess_that_raises(tmp_path):
    paths = [str(save_image(tmp_path / f"{i}.png", (10 + i, 10))) for i in range(4)]

    def fussy(image):
        if image.size[0] == 12:
            raise RuntimeError("cannot handle width 12")
        return PREPROCESS(image)

    dataset = ImagePathDataset(paths, fussy)
    items = [dataset[i] for i in range(len(dataset))]
    assert items[2][2] is None
    assert items[2][3] == "preprocess failed (RuntimeError: cannot handle width 12)"
    assert all(item[3] is None for i, item in enumerate(items) if i != 2)


def test_collate_with_only_failures_gives_empty_pixels():
    batch = collate_scoring_batch([(5, "a.jpg", None, "file not found"), (6, "b.jpg", None, "empty file")])
    assert batch.pixels.shape == (0, 3, 0, 0)
    assert batch.good_positions == [] and batch.errors == {0: "file not found", 1: "empty file"}
    assert batch.results([]) == [(5, "a.jpg", None, "file not found"), (6, "b.jpg", None, "empty file")]


def test_collate_positions_mask_and_score_count_check():
    good = torch.ones(3, 4, 4)
    batch = collate_scoring_batch([(0, "a", good, None), (1, "b", None, "not an image"), (2, "c", good * 2, None)])
    assert batch.pixels.shape == (2, 3, 4, 4)
    assert batch.pixels[1].max().item() == 2.0
    assert batch.good_positions == [0, 2]
    assert batch.good_mask.tolist() == [True, False, True]
    assert batch.results([0.25, 0.75]) == [(0, "a", 0.25, None), (1, "b", None, "not an image"), (2, "c", 0.75, None)]
    with pytest.raises(ValueError, match="got 1 scores for 2 decoded images"):
        batch.results([0.5])


def test_collate_rejects_mixed_tensor_shapes():
    with pytest.raises(ValueError, match="different shapes"):
        collate_scoring_batch([(0, "a", torch.zeros(3, 4, 4), None), (1, "b", torch.zeros(3, 5, 5), None)])


def test_auto_decode_plan_by_device_and_core_count():
    # a CPU model: decode in process, one thread per core (at most the batch), never worker processes
    assert auto_decode_plan(10_000, 8, "cpu", cpus=2) == DecodePlan(workers=0, threads=2)
    assert auto_decode_plan(10_000, 4, "cpu", cpus=16) == DecodePlan(workers=0, threads=4)
    assert auto_num_workers(10_000, 32) == 0
    # a GPU model: processes on all cores but the one feeding the GPU, no more than there are batches
    assert auto_decode_plan(10_000, 32, "cuda", cpus=16) == DecodePlan(workers=15, threads=1)
    assert auto_decode_plan(40, 32, "cuda", cpus=16).workers == 2
    assert auto_decode_plan(10_000, 32, "cuda", cpus=1).workers == 1
    assert auto_decode_plan(10_000, 32, "cuda", cpus=256).workers == MAX_AUTO_WORKERS
    assert auto_decode_plan(0, 32, "cuda", cpus=16).workers == 0
    # an explicit choice is kept
    assert auto_decode_plan(10_000, 8, "cpu", num_workers=3, cpus=2) == DecodePlan(workers=3, threads=1)
    with pytest.raises(ValueError, match="num_workers"):
        auto_decode_plan(10, 8, "cpu", num_workers=-1)


def test_in_process_loader_decodes_a_batch_only_when_asked(tmp_path):
    """Turn-taking: batch k+1 is decoded after the consumer is done with batch k, never ahead of it."""
    paths = [str(save_image(tmp_path / f"{i}.png", (10, 10), (i, 0, 0))) for i in range(6)]
    decoded = []

    def recording(image):
        decoded.append(image.getpixel((0, 0))[0])
        return PREPROCESS(image)

    loader = make_scoring_loader(paths, preprocess=recording, batch_size=2, num_workers=0, decode_threads=2)
    assert isinstance(loader, InProcessScoringLoader) and len(loader) == 3
    seen = []
    for batch in loader:
        assert len(decoded) == 2 * (len(seen) + 1)        # this batch, nothing of the next one yet
        seen.append(batch.paths)
    assert seen == [paths[0:2], paths[2:4], paths[4:6]] and sorted(decoded) == list(range(6))


def test_loader_on_empty_input_and_bad_arguments():
    assert list(make_scoring_loader([], preprocess=PREPROCESS)) == []
    with pytest.raises(ValueError, match="batch_size"):
        make_scoring_loader(["a.jpg"], preprocess=PREPROCESS, batch_size=0)


def test_pixels_match_direct_preprocessing(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (30, 45, 3), dtype=np.uint8)).save(path)
    (batch,) = list(make_scoring_loader([path], preprocess=PREPROCESS, num_workers=0))
    torch.testing.assert_close(batch.pixels[0], PREPROCESS(load_rgb(path)), rtol=0, atol=0)
