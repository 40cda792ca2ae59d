"""``perceptiq build-tiny``: rebuild the built-in model perceptiq-tiny (docs/builtin-model.md).

    perceptiq fetch-photos -o photos --role train
    perceptiq build-tiny --photos photos -o src/perceptiq/weights --overwrite       # the shipped files
    perceptiq build-tiny --photos photos -o src/perceptiq/weights --overwrite --resume   # after a stop
    perceptiq build-tiny --recipe perceptiq-tiny-v1 -o /tmp/v1                      # the first model
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import (check_output_file, device_option, output_option, overwrite_option, progress_option,
                     recipe_option, set_option)
from .train import configure_logging

DEFAULT_WORK_DIR = Path("runs") / "perceptiq-tiny-build"


def build_tiny_command(
    output: Path = output_option("Folder for <recipe name>.safetensors + .json (src/perceptiq/weights "
                                 "replaces the shipped model).", default=...),
    overwrite: bool = overwrite_option(),
    photos: Optional[Path] = typer.Option(None, "--photos", metavar="DIR",
                                          help="Pristine training photographs (`perceptiq fetch-photos -o DIR "
                                               "--role train`); needed by the perceptiq-tiny recipe."),
    work_dir: Path = typer.Option(DEFAULT_WORK_DIR, "--work-dir", metavar="DIR",
                                  help="Crop bank, training state and logs (keep it to resume)."),
    resume: bool = typer.Option(False, "--resume/--no-resume",
                                help="Continue a stopped build from the work folder's last completed epoch "
                                     "(the crop bank always resumes)."),
    recipe: str = recipe_option("perceptiq-tiny", "Recipe name or YAML path."),
    set_: List[str] = set_option(),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", metavar="N", min=1, help="Cap steps per epoch (smoke runs)."),
    fresh_data: bool = typer.Option(False, "--fresh-data/--reuse-data",
                                    help="perceptiq-tiny-v1 only: synthesise its training data again."),
    device=device_option(),
    progress: bool = progress_option(),
) -> None:
    """Rebuild the built-in model (default recipe perceptiq-tiny: pristine photographs, ranked distortions)."""
    from ..recipes import load_recipe

    loaded = load_recipe(recipe, list(set_))
    name = loaded.get("name", "perceptiq-tiny")
    check_output_file(output / f"{name}.safetensors", suffixes=(".safetensors",), overwrite=overwrite or resume)
    train_overrides = {"max_steps_per_epoch": max_steps} if max_steps else None
    if loaded.get("protocol", {}).get("kind") == "crop-bank":
        if photos is None:
            raise typer.BadParameter("recipe {} trains on photographs: give --photos DIR (made by "
                                     "`perceptiq fetch-photos -o DIR --role train`)".format(name),
                                     param_hint="--photos")
        configure_logging()
        from ..training.builtin.ranked import build_ranked_model

        result = build_ranked_model(loaded, output, photos=photos, work_dir=work_dir,
                                    train_overrides=train_overrides, resume=resume,
                                    device=getattr(device, "value", str(device)), progress=progress, file_stem=name)
        typer.echo(f"wrote {result.checkpoint} (+ .json): {result.n_photos} photographs, {result.n_groups} "
                   f"crop groups, trained {result.train_seconds:.0f} s, final loss {result.final_loss:.4f}")
        typer.echo(f"judge it: perceptiq reproduce-builtin --photos PHOTOS --model {result.checkpoint}")
        return
    import json

    configure_logging()
    from ..training.builtin import build_builtin_model

    result = build_builtin_model(output, recipe=loaded, work_dir=work_dir,
                                 train_overrides=train_overrides, reuse_data=not fresh_data, progress=progress)
    typer.echo(f"wrote {result.checkpoint} (+ .json); trained {result.train_seconds:.0f} s on "
               f"{result.n_train_images} images")
    typer.echo(f"held-out ({result.n_heldout_images} images): SRCC {result.heldout_metrics['srcc']:.3f} "
               f"PLCC {result.heldout_metrics['plcc']:.3f}")
    typer.echo(json.dumps({g: round(m.get("srcc", float("nan")), 3) for g, m in result.heldout_by_group.items()}))


def reproduce_builtin_command(
    photos: Optional[Path] = typer.Option(None, "--photos", metavar="DIR",
                                          help="Photographs with train/ (NIQE is fitted on them) and heldout/ "
                                               "(distorted and scored), as `perceptiq fetch-photos -o DIR --role "
                                               "all` writes them."),
    model: str = typer.Option("perceptiq-tiny", "--model", metavar="NAME|CHECKPOINT",
                              help="The model judged against the baselines."),
    work_dir: Path = typer.Option(Path("runs") / "builtin-report", "--work-dir", metavar="DIR",
                                  help="Held-out distortions and NIQE's fit (reused when unchanged)."),
    output: Path = output_option("Report folder: report.md and report.json.", default=Path("reports") / "builtin"),
    overwrite: bool = overwrite_option(),
    max_side: int = typer.Option(512, "--max-side", min=64, metavar="PX",
                                 help="Long side of the held-out photographs before distortion."),
    seed: int = typer.Option(1, "--seed", metavar="N", help="Seed of the synthetic distortions."),
    view: Optional[str] = typer.Option(None, "--view", metavar="VIEW",
                                       help="View of the judged model (default: its own; `perceptiq models`)."),
) -> None:
    """The built-in model against NIQE, variance of the Laplacian and perceptiq-tiny-v1 on held-out
    photographs x 25 distortion types x 5 levels: one table, every baseline scored in the same run."""
    from .common import check_output_folder

    check_output_folder(output, overwrite=overwrite)
    reproduce_builtin(photos, model, work_dir, output, max_side=max_side, seed=seed, view=view)


def reproduce_builtin(photos: Optional[Path], model: str, work_dir: Path, output: Path, *,
                      max_side: int = 512, seed: int = 1, view: Optional[str] = None,
                      limit_refs: Optional[int] = None) -> None:
    """``perceptiq reproduce-builtin``: writes ``output/report.md`` and ``output/report.json``."""
    import json

    if photos is None:
        raise typer.BadParameter("give --photos DIR with train/ and heldout/ (made by `perceptiq fetch-photos "
                                 "-o DIR --role all`)", param_hint="--photos")
    configure_logging()
    from ..reproduce.builtin_model import run_builtin_report

    report = run_builtin_report(photos, work_dir, model=model, max_side=max_side, seed=seed,
                                views={model: view} if view else None, limit_refs=limit_refs)
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.md").write_text(report.markdown())
    (output / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=float) + "\n")
    typer.echo(report.markdown())
    typer.echo(f"wrote {output / 'report.md'} and {output / 'report.json'}")
