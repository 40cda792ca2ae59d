"""``perceptiq experts`` (Gamma Fig. 5b) and ``perceptiq info`` (parameters and MACs, Gamma Tables 5 and 10).

Plain typer-compatible functions; ``cli/main.py`` registers them. The work is done in
``perceptiq.models.analysis``; these functions parse flags, load data and print.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import (Device, Missing, Scene, Task, backbone_option, batch_size_option, check_output_folder, parse_data,
                     data_option, device_option, error_text, fail, json_option, missing_option, model_option,
                     output_option, overwrite_option, progress_option, scene_option, task_option, value,
                     weights_option)
from .score import describe_model_line


def _chosen_images(samples: list, n: int | None, seed: int) -> list:
    """``n`` samples drawn without replacement (seeded; datasets are often ordered by distortion type), in
    dataset order; all of them when ``n`` is None or at least the dataset's size."""
    if n is None or n >= len(samples):
        return list(samples)
    import numpy as np

    picks = np.sort(np.random.default_rng(seed).choice(len(samples), size=n, replace=False))
    return [samples[i] for i in picks]


def _pixel_batches(assessor, paths: list[str], batch_size: int, skipped: list[str]):
    import torch

    from ..inference.images import ImageDecodeError

    batch = []
    for path in paths:
        try:
            batch.append(assessor.preprocess(path))
        except ImageDecodeError as err:
            skipped.append(f"{path}: {err}")
            continue
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def experts_command(
    model: str = model_option(..., "A trained Gamma checkpoint (or a registered model name)."),
    data: List[str] = data_option("NAME=ROOT for each dataset (repeatable)."),
    images_per_dataset: int = typer.Option(200, "--images-per-dataset", metavar="N", min=0,
                                           help="Images drawn per dataset (seeded); 0, or more than the "
                                                "dataset has: all of them."),
    layer: int = typer.Option(-1, "--layer", metavar="INDEX", help="Visual MoAE layer to report (-1 = the last, as in Fig. 5b)."),
    output: Optional[Path] = output_option("Folder for router_activation.csv/.md and the bar chart PNG."),
    overwrite: bool = overwrite_option(),
    batch_size: int = batch_size_option(16),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of the image draw."),
    device: Device = device_option(),
    missing: Missing = missing_option(),
    progress: bool = progress_option(),
) -> None:
    """Mean router activation of each adaptive expert per dataset in a visual MoAE layer (Gamma Fig. 5b).

    Each image's router probabilities are averaged over all its tokens (class token and every patch token,
    equally weighted); a dataset's figure is the mean over its images, each image weighted equally.
    """
    from ..data import load_dataset
    from ..inference import load_model
    from ..models.analysis import (ActivationRow, activation_table_csv, format_activation_table,
                                   mean_router_activation, save_activation_chart)

    if output is not None:
        check_output_folder(output, overwrite=overwrite)
    roots = parse_data(data)
    if not roots:
        fail("give at least one --data NAME=ROOT")
    try:
        assessor = load_model(model, device=device.value, precision="fp32")
    except (KeyError, ValueError, FileNotFoundError) as err:
        fail(error_text(err))
    if not hasattr(assessor.module, "mean_router_activation"):
        fail(f"model '{assessor.spec.name}' has no MoAE routers (only Gamma models do)")
    typer.echo(describe_model_line(assessor.describe()), err=True)
    rows, skipped = [], []
    for name, root in roots.items():
        try:
            dataset = load_dataset(name, root, missing=missing.value)
        except (KeyError, ValueError, FileNotFoundError, TypeError) as err:
            fail(f"{name}: {err}")
        n = images_per_dataset or None   # 0: all
        paths = [str(s.path) for s in _chosen_images(list(dataset.samples), n, seed)]
        batches = _pixel_batches(assessor, paths, batch_size, skipped)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=-(-len(paths) // batch_size), unit="batch", desc=name,
                           dynamic_ncols=True)
        try:
            activation, count = mean_router_activation(assessor.module, batches, layer=layer)
        except (ValueError, IndexError) as err:
            fail(f"{name}: {err}")
        rows.append(ActivationRow(name, count, activation))
    typer.echo(f"mean router activation, visual MoAE layer {layer} (tokens: class + patches, equally weighted; "
               "images equally weighted)")
    table = format_activation_table(rows)
    typer.echo(table)
    if skipped:
        typer.echo(f"{len(skipped)} image(s) could not be read and were left out, e.g. {skipped[0]}", err=True)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / "router_activation.csv").write_text(activation_table_csv(rows))
        (output / "router_activation.md").write_text(table + "\n")
        try:
            chart = save_activation_chart(rows, output / "router_activation.png")
        except RuntimeError as err:   # no matplotlib (the plots extra): the table is the result
            typer.echo(f"wrote {output / 'router_activation.csv'}; bar chart skipped: {err}", err=True)
            return
        typer.echo(f"wrote {output / 'router_activation.csv'} and {chart}")


def _millions(n: int) -> str:
    return f"{n:,} ({n / 1e6:.2f}M)"


def _giga(n: int) -> str:
    return f"{n / 1e9:.2f} G"


def parse_options(entries: list[str]) -> dict:
    """``["n_layers=4", "use_sigma=false"]`` -> ``{"n_layers": 4, "use_sigma": False}`` (values as YAML)."""
    import yaml

    options = {}
    for entry in entries:
        if "=" not in entry:
            raise ValueError(f"--option expects KEY=VALUE, got '{entry}'")
        key, raw = entry.split("=", 1)
        options[key.strip()] = yaml.safe_load(raw)
    return options


def info_report(model: str, *, backbone: str | None = None, weights: str | None = None,
                task: str | None = None, scene: str | None = None, options: dict | None = None) -> dict:
    """Parameters, MACs and the paper's figures (where it gives them) of a model, as a dict.

    ``options`` go to the model's factory (a registered name only), e.g. ``{"n_layers": 4}`` for Table 5.
    """
    from ..models import build_model, is_checkpoint
    from ..models.analysis import compute_report, count_parameters, paper_efficiency

    if options and is_checkpoint(model):
        raise ValueError(f"--option changes a registered model's shape; {model} is a checkpoint with its own")
    bundle = build_model(model, backbone=backbone, weights=weights, task=task, scene=scene, **(options or {}))
    module = bundle.module
    params = count_parameters(module)
    compute = compute_report(module)
    options = bundle.config.get("options") or {}
    report = {
        "model": bundle.spec.name, "backbone": bundle.backbone.arch, "weights": bundle.backbone.weights,
        "task": bundle.task, "scene": bundle.scene, "options": options,
        "parameters": {"trainable": params.trainable, "total": params.total, **params.groups},
        "macs": {"image_size": compute.image_size, "image_tower": compute.image_tower.total,
                 "image_tower_without_attention_modules": compute.image_tower.without_attention_modules(),
                 "forward_per_image": compute.forward.total, "text_tower_per_prompt": compute.text_per_prompt.total},
    }
    paper = paper_efficiency().get(bundle.spec.name)
    if paper:
        entry = {"source": paper["source"]}
        same_shape = all(options.get(k) == v for k, v in (paper.get("compute_options") or {}).items())
        if same_shape:
            entry.update(trainable_params_m=paper["trainable_params_m"], compute_g=paper["compute_g"])
        layers = options.get("n_layers")
        by_layers = paper.get("total_params_m_by_layers") or {}
        if options.get("n_experts", 3) == 3 and layers in by_layers:
            entry["total_params_m"] = by_layers[layers]
        report["paper"] = entry
    return report


def format_info(report: dict) -> str:
    p, m = report["parameters"], report["macs"]
    size = m["image_size"]
    lines = [
        f"model {report['model']} ({report['backbone']}, weights={report['weights']}, task={report['task']}, "
        f"scene={report['scene']})",
        f"options: {json.dumps(report['options'], sort_keys=True)}" if report["options"] else "options: -",
        f"parameters: trainable {_millions(p['trainable'])}, total {_millions(p['total'])}",
    ]
    groups = {k: v for k, v in p.items() if k not in ("trainable", "total")}
    if groups:
        lines.append("  " + ", ".join(f"{k} {_millions(v)}" for k, v in groups.items()))
    lines += [
        f"multiply-accumulates per {size}x{size} image (counted; 1 MAC = 2 FLOPs):",
        f"  image tower (to the image feature)          {_giga(m['image_tower'])}MACs",
        f"    without nn.MultiheadAttention's work      {_giga(m['image_tower_without_attention_modules'])}MACs"
        "  (what counters that hook Linear/Conv modules report)",
        f"  whole forward of one image, steady state    {_giga(m['forward_per_image'])}MACs"
        "  (cached text features are not recomputed)",
        f"  text tower, per prompt (77 tokens)          {_giga(m['text_tower_per_prompt'])}MACs"
        "  (once per prompt set where the model caches text features)",
    ]
    paper = report.get("paper")
    if paper:
        lines.append(f"paper ({paper['source']}):")
        if "trainable_params_m" in paper:
            lines.append(f"  trainable {paper['trainable_params_m']}M (ours {p['trainable'] / 1e6:.2f}M"
                         + (f", of which MoAE {p['moae_trainable'] / 1e6:.2f}M" if "moae_trainable" in p else "")
                         + f"); compute {paper['compute_g']}G (ours: image tower {m['image_tower'] / 1e9:.2f} GMACs, "
                         f"{m['image_tower_without_attention_modules'] / 1e9:.2f} without nn.MultiheadAttention)")
        if "total_params_m" in paper:
            lines.append(f"  total {paper['total_params_m']}M (ours {p['total'] / 1e6:.2f}M)")
        lines.append("  docs/gamma.md explains the differences (the paper's trainable count leaves out the "
                     "adapter and C; its 28.45G matches a count that misses nn.MultiheadAttention's projections)")
    return "\n".join(lines)


def info_command(
    model: str = model_option(),
    backbone: Optional[str] = backbone_option(),
    weights: Optional[str] = weights_option("openai | FILE | uniqa:FILE | random (counts do not depend on the "
                                            "values: random builds fastest)."),
    task: Optional[Task] = task_option(),
    scene: Optional[Scene] = scene_option("Scene prompts, where the model takes them."),
    option: List[str] = typer.Option([], "--option", metavar="KEY=VALUE", show_default=False,
                                     help="KEY=VALUE model option (repeatable), e.g. n_layers=4 for a row of "
                                          "Gamma Table 5."),
    as_json: bool = json_option(),
) -> None:
    """Trainable and total parameters and multiply-accumulates per image, next to the paper's figures."""
    from ..backbones.weights import WeightsNotFoundError

    try:
        report = info_report(model, backbone=backbone, weights=weights, task=value(task), scene=value(scene),
                             options=parse_options(option))
    except (WeightsNotFoundError, KeyError, ValueError, FileNotFoundError, TypeError) as err:
        fail(error_text(err))
    typer.echo(json.dumps(report, indent=2) if as_json else format_info(report))
