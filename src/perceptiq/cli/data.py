"""``perceptiq splits`` and ``perceptiq synthesize``: making datasets and their train/test splits."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .common import (Missing, SplitMode, check_output_file, check_output_folder, data_option, error_text, fail,
                     missing_option, output_option, overwrite_option, progress_option, seed_option, splits_option)


class SyntheticFormat(str, Enum):
    png = "png"
    jpg = "jpg"


def load_labeled(data: List[str], missing: Missing):
    """The one dataset a ``--data NAME=ROOT`` names, loaded (a clear error for a bad name/root/row)."""
    from ..data import load_dataset
    from .common import parse_data

    (name, root), = parse_data(data, exactly_one=True).items()
    try:
        return load_dataset(name, root, missing=missing.value)
    except (KeyError, ValueError, FileNotFoundError) as err:
        fail(error_text(err))


def make_splits(labeled, *, mode: SplitMode, n_splits: int, seed: int, k: Optional[int] = None,
                fraction: Optional[float] = None, train_fraction: float = 0.8):
    """Seeded splits; ``auto`` is the dataset's default protocol (by reference when it has references)."""
    from ..data.splits import default_split_mode, make_repeated_splits

    try:
        base = default_split_mode(labeled.samples, synthetic=labeled.spec.synthetic, dataset=labeled.spec.name)
        chosen = base if mode is SplitMode.auto else mode.value
        options = {"train_fraction": train_fraction}
        if chosen in ("k_shot", "subset_fraction"):
            options.update(base_mode=base, k=k, fraction=fraction)
        return make_repeated_splits(labeled.samples, labeled.spec.name, chosen, n_splits, base_seed=seed,
                                    **options)
    except ValueError as err:
        fail(str(err))


def splits_command(
    data: List[str] = data_option("NAME=ROOT of the dataset to split (`perceptiq datasets` lists the names; "
                                  "csv=labels.csv for a generic CSV)."),
    output: Path = output_option("Split file to write (.json).", default=...),
    overwrite: bool = overwrite_option(),
    mode: SplitMode = typer.Option(SplitMode.auto, "--mode", case_sensitive=False,
                                   help="auto = by reference image when the dataset has references (synthetic "
                                        "datasets, a CSV with a ref column), else random by image."),
    splits: int = splits_option("Number of seeded splits.", 10, min=1),
    seed: int = seed_option(),
    k: Optional[int] = typer.Option(None, "--k", metavar="N", min=1, help="Training images for --mode k_shot (50/100/200 in "
                                                             "GRMP Table 1)."),
    fraction: Optional[float] = typer.Option(None, "--fraction", metavar="FRACTION", min=0.0, max=1.0,
                                             help="Training fraction for --mode subset_fraction."),
    train_fraction: float = typer.Option(0.8, "--train-fraction", metavar="FRACTION", min=0.0, max=1.0,
                                         help="Share of images (or of references) in the training part."),
    missing: Missing = missing_option(),
) -> None:
    """Write seeded, reproducible train/test splits of a dataset to JSON."""
    check_output_file(output, suffixes=(".json",), overwrite=overwrite)
    from ..data.splits import save_splits

    labeled = load_labeled(data, missing)
    made = make_splits(labeled, mode=mode, n_splits=splits, seed=seed, k=k, fraction=fraction,
                       train_fraction=train_fraction)
    save_splits(output, made)
    typer.echo(f"wrote {len(made)} {made[0].mode} split(s) of {labeled.spec.name} "
               f"({len(made[0].train)} train / {len(made[0].test)} test) to {output}")


def synthesize_command(
    source: Path = typer.Argument(..., metavar="SOURCE", help="Folder of pristine images (searched recursively)."),
    output: Path = output_option("Folder to write reference/, distorted/, labels.csv and manifest.json to.",
                                 default=...),
    overwrite: bool = overwrite_option(),
    types: Optional[str] = typer.Option(None, "--types", metavar="LIST", help="Comma-separated distortion types (default: all "
                                                              "25; docs/synthetic.md lists them)."),
    levels: str = typer.Option("1,2,3,4,5", "--levels", metavar="LIST", help="Comma-separated levels 1..5."),
    seed: int = typer.Option(0, "--seed", metavar="N", min=0, help="Seed of the random distortions (same seed, same images)."),
    max_side: int = typer.Option(512, "--max-side", metavar="PIXELS", min=32, help="Sources are shrunk (never enlarged) to this "
                                                                 "longest side."),
    image_format: SyntheticFormat = typer.Option(SyntheticFormat.png, "--format", case_sensitive=False,
                                                   help="File format of the distorted images."),
    progress: bool = progress_option(),
) -> None:
    """Turn pristine images into a KADID-style labelled dataset (25 types x 5 levels), read as generic CSV."""
    if not source.is_dir():
        fail(f"source folder {source} does not exist or is not a folder")
    check_output_folder(output, overwrite=overwrite)
    try:
        level_values = tuple(int(v) for v in levels.split(","))
    except ValueError:
        fail(f"--levels expects comma-separated integers 1..5, got '{levels}'")
    from ..data.synthetic import synthesize
    from ..data.synthetic.sources import IMAGE_SUFFIXES, list_source_images

    sources = list_source_images(source, exclude=output)
    if not sources:
        fail(f"no images found in {source} (searched recursively for {' '.join(IMAGE_SUFFIXES)})", code=1)
    bar = None

    def advance(done: int, total: int) -> None:   # distorted images written / to write
        nonlocal bar
        if not progress:
            return
        if bar is None:   # made at the first image, so a refused --types prints no bar
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="img", desc="synthesizing", dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        labels = synthesize(source, output, types=types.split(",") if types else None, levels=level_values,
                            seed=seed, max_side=max_side, image_format=image_format.value, overwrite=True,
                            progress=advance)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    finally:
        if bar is not None:
            bar.close()
    manifest = json.loads((labels.parent / "manifest.json").read_text())
    typer.echo(f"wrote {manifest.get('n_rows')} distorted images of {manifest.get('n_references')} references "
               f"to {labels} ({len(manifest.get('skipped', []))} source files skipped)")
