"""``perceptiq evaluate``: a model's SRCC/PLCC/KRCC/RMSE on a labelled dataset, over seeded splits."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import (Device, Missing, Precision, Scene, SplitMode, Task, backbone_option, batch_size_option,
                     check_output_file, check_view, data_option, device_option, error_text, fail, missing_option,
                     model_option, output_option, overwrite_option, precision_option, progress_option, scene_option, seed_option,
                     splits_option, task_option, value, view_option, weights_option, workers_option)
from .data import load_labeled, make_splits
from .score import describe_model_line


def evaluate_command(
    data: List[str] = data_option("NAME=ROOT of the labelled dataset (`perceptiq datasets` lists the names; "
                                  "csv=labels.csv for a generic CSV)."),
    model: str = model_option(),
    backbone: Optional[str] = backbone_option(),
    weights: Optional[str] = weights_option(),
    task: Optional[Task] = task_option("What to assess (default: the dataset's task)."),
    scene: Optional[Scene] = scene_option(),
    view: Optional[str] = view_option(),
    splits: Optional[str] = splits_option("N (that many seeded splits; their test parts are scored) or a split "
                                          "file from `perceptiq splits`; default: the whole dataset is the test "
                                          "set."),
    mode: SplitMode = typer.Option(SplitMode.auto, "--mode", case_sensitive=False,
                                   help="Split mode when --splits is a number (auto: by reference image when the "
                                        "dataset has references, else random)."),
    seed: int = seed_option(),
    batch_size: int = batch_size_option(),
    workers: Optional[int] = workers_option(),
    device: Device = device_option(),
    precision: Precision = precision_option(),
    missing: Missing = missing_option(),
    output: Optional[Path] = output_option("Also write the table to FILE.md or FILE.csv (and the scatter plot "
                                           "to FILE_scatter.png)."),
    scatter: Optional[Path] = typer.Option(None, "--scatter", metavar="FILE.png",
                                           help="Predicted score against MOS with the fitted logistic curve and "
                                                "SRCC/PLCC in the legend (default with --output: next to it, "
                                                "FILE_scatter.png)."),
    overwrite: bool = overwrite_option(),
    progress: bool = progress_option(),
) -> None:
    """SRCC / PLCC (plain and logistic) / KRCC / RMSE of a model on a dataset, median over splits."""
    check_output_file(output, suffixes=(".md", ".csv"), overwrite=overwrite)
    if scatter is None and output is not None:
        scatter = output.with_name(f"{output.stem}_scatter.png")
    check_output_file(scatter, suffixes=(".png",), overwrite=overwrite, what="--scatter")
    view = check_view(view)
    labeled = load_labeled(data, missing)
    if splits is None:
        from ..data.splits import make_repeated_splits

        split_list = make_repeated_splits(labeled.samples, labeled.spec.name, "whole_test")
    elif splits.isdigit() and int(splits) > 0:
        split_list = make_splits(labeled, mode=mode, n_splits=int(splits), seed=seed)
    else:
        from ..data.splits import SplitFileError, load_splits

        try:
            split_list = load_splits(splits)
        except (SplitFileError, FileNotFoundError, ValueError) as err:
            fail(f"--splits {splits}: not a positive number nor a readable split file ({err})")

    from ..backbones.weights import WeightsNotFoundError
    from ..evaluation.protocols import evaluate_on_splits
    from ..inference import load_model, score_paths

    try:
        assessor = load_model(model, backbone=backbone, weights=weights, task=value(task) or labeled.spec.task,
                              scene=value(scene), device=device.value, precision=precision.value, view=view)
    except (WeightsNotFoundError, KeyError, ValueError, FileNotFoundError) as err:
        fail(error_text(err))
    info = assessor.describe()
    typer.echo(describe_model_line(info, info["device"], info["precision"], f"view {info['view']}"), err=True)
    typer.echo(f"dataset {labeled.spec.name}: {len(labeled.samples)} images, {len(split_list)} "
               f"{split_list[0].mode} split(s)", err=True)

    scored: list[tuple[float, float]] = []   # (predicted, MOS) of every image scored, for the scatter plot

    def predict(samples):
        rows = score_paths(assessor, [str(s.path) for s in samples], batch_size=batch_size, num_workers=workers,
                           progress=progress)
        by_path = {row["path"]: row["score"] for row in rows}
        predicted = [float("nan") if by_path.get(str(s.path)) is None else by_path[str(s.path)] for s in samples]
        scored.extend(zip(predicted, (float(s.score) for s in samples)))
        return predicted

    try:
        result = evaluate_on_splits(predict, labeled.samples, split_list, predict_once=True)
    except ValueError as err:   # a split file made from another version of the dataset
        fail(str(err))
    typer.echo(result.to_markdown())
    if output is not None:
        result.write(output)
        typer.echo(f"wrote {output}", err=True)
    if scatter is not None:
        from ..evaluation.plots import ScatterPanel, save_scatter

        predicted, mos = zip(*scored) if scored else ((), ())
        title = f"{labeled.spec.name}: {len(predicted)} images ({len(split_list)} {split_list[0].mode} test part(s))"
        try:
            save_scatter([ScatterPanel(title, predicted, mos)], scatter, title=describe_model_line(info))
        except ImportError as err:
            fail(f"{err} (the table was written)", code=1)
        typer.echo(f"wrote {scatter}", err=True)
