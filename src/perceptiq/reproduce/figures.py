"""The figure targets: each reads its finished runs, computes what the figure shows, adds a section of
numbers to the report (the paper's beside ours where the paper prints any) and writes the PNG(s).

* GRMP-IQA Fig. 1 — t-SNE of the test images' features of a CoOp-style tuned model (lambda 0) and a
  GRMP-IQA tuned model (lambda 5), coloured by semantic class, with the "semantic noise" points;
* GRMP-IQA Fig. 2 — SRCC of 50-shot prompt tuning over text-context starts and splits;
* GRMP-IQA Fig. 4 — SRCC per epoch and the G_qua/G_sem angle per step, with and without QGR;
* GRMP-IQA Fig. 5 — gMAD on the Waterloo Exploration Database between GRMP-IQA and a rival;
* GRMP-IQA AGIQA-3K few-shot results (supplementary);
* Gamma Fig. 5a — mean SRCC against the number of experts and of MoAE layers;
* Gamma Fig. 5b — mean router activation per expert and dataset.

Definitions where the papers are silent are documented in docs/reproduce.md.
"""
from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..evaluation.plots import pyplot
from .numbers import paper_numbers
from .report import Cell, Figure, Report, Row, Section, dataset_label
from .results import RunResults
from .runs import RunContext, RunStep

log = logging.getLogger(__name__)

#: Fig. 1's caption: "noise samples with high semantic confidence (confidence > 0.8)"
SEMANTIC_CONFIDENCE = 0.8


def _unit(run_dir: Path, prefix: str) -> Path:
    """The first unit folder of a run whose name starts with ``prefix`` (else the first unit at all)."""
    units = RunResults(run_dir).unit_dirs()
    if not units:
        raise FileNotFoundError(f"{run_dir}: no unit with predictions.csv")
    return next((u for u in units if u.name.startswith(prefix)), units[0])


def _pixels(assessor, paths: Sequence[str], batch_size: int = 64):
    import torch

    for start in range(0, len(paths), batch_size):
        yield torch.stack([assessor.preprocess(p) for p in paths[start:start + batch_size]])


def _base_model(recipe: dict, device):
    """The recipe's model without its starting checkpoint: the original CLIP the run started from."""
    from ..inference import load_model

    model = recipe["model"]
    return load_model(model["name"], backbone=model.get("backbone"), weights=model.get("weights"),
                      task=model.get("task"), scene=model.get("scene"), device=str(device), precision="fp32",
                      **(model.get("options") or {}))


# -- GRMP-IQA Fig. 1 ------------------------------------------------------------------------------------------
def semantic_noise(tuned_confidence: np.ndarray, tuned_class: np.ndarray, original_class: np.ndarray,
                   predicted: np.ndarray, mos: np.ndarray, threshold: float = SEMANTIC_CONFIDENCE) -> np.ndarray:
    """Fig. 1's black dots, as a mask over N images: the tuned model is semantically confident
    (nine-class probability > ``threshold``) and right (its class is the original CLIP's), but its quality
    prediction is wrong: the image falls on the other side of the median by prediction than by MOS.

    Shapes: every argument (N,). The median split makes "wrong" independent of the score's calibration.
    """
    predicted, mos = np.asarray(predicted, float), np.asarray(mos, float)
    wrong_quality = (predicted >= np.median(predicted)) != (mos >= np.median(mos))
    return (np.asarray(tuned_confidence) > threshold) & (np.asarray(tuned_class) == np.asarray(original_class)) & wrong_quality


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N, D] -> [N, 2] by scikit-learn's t-SNE (perplexity 30, or (N - 1) / 3 for small N; PCA start)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:
        raise ImportError("the t-SNE of Fig. 1 needs scikit-learn: pip install 'perceptiq[plots]'") from err
    n = features.shape[0]
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def grmp_fig1(ctx: RunContext, out_dir: Path, report: Report) -> None:
    import torch

    from ..inference import load_model
    from .targets import GRMP_QGR

    models = {"CoOp-style tuning (lambda 0)": GRMP_QGR["without-qgr"], "GRMP-IQA (QGR, lambda 5)": GRMP_QGR["with-qgr"]}
    first_unit = _unit(ctx.run_dir(GRMP_QGR["with-qgr"]), "koniq10k-k50")
    results = RunResults(ctx.run_dir(GRMP_QGR["with-qgr"]))
    dataset, (_, mos, paths) = next(iter(results.predictions(first_unit).items()))
    classes = None
    original = _base_model(results.recipe, ctx.device)
    with torch.no_grad():
        original_class = torch.cat([original.module.frozen_semantic_probabilities(p).argmax(-1)
                                    for p in _pixels(original, paths)]).numpy()
    classes = list(original.module.semantic_prompts)
    panels, counts = [], {}
    for label, run in models.items():
        unit = ctx.run_dir(run) / first_unit.name
        assessor = load_model(str(unit / "model.safetensors"), device=str(ctx.device), precision="fp32")
        feats, conf, cls, scores = [], [], [], []
        with torch.no_grad():
            for pixels in _pixels(assessor, paths):
                features = assessor.module.image_features(pixels)
                semantic = assessor.module.semantic_probabilities(image_features=features)
                feats.append(features.float().numpy())
                conf.append(semantic.max(-1).values.numpy())
                cls.append(semantic.argmax(-1).numpy())
                scores.append(assessor.module.quality_probability(image_features=features).numpy())
        features, conf, cls, scores = (np.concatenate(x) for x in (feats, conf, cls, scores))
        noise = semantic_noise(conf, cls, original_class, scores, np.asarray(mos))
        counts[label] = int(noise.sum())
        panels.append((label, tsne_2d(features), noise))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    colours = plt.get_cmap("tab10")
    for ax, (label, points, noise) in zip(axes, panels):
        for index, name in enumerate(classes):
            mask = (original_class == index) & ~noise
            if mask.any():
                ax.scatter(points[mask, 0], points[mask, 1], s=10, color=colours(index), label=name.split(" of a ")[-1].rstrip("."))
        ax.scatter(points[noise, 0], points[noise, 1], s=16, color="black", label=f"semantic noise ({int(noise.sum())})")
        ax.set_title(f"{label}: {int(noise.sum())} noise points", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"t-SNE of image features, {dataset_label(dataset)} test images ({len(paths)}), "
                 "coloured by the original CLIP's semantic class", fontsize=10)
    path = out_dir / "fig1_tsne.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    report.figures.append(Figure(path, "GRMP-IQA Fig. 1: t-SNE of the image features after CoOp-style and GRMP-IQA "
                                       "tuning; black: semantic-noise points"))
    coop, grmp = counts.values()
    reduction = 100.0 * (coop - grmp) / coop if coop else None
    where = (f"{first_unit.name}: {coop} noise points after CoOp-style tuning, {grmp} after GRMP-IQA, of {len(paths)}"
             + ("" if coop else " (no noise points without QGR: the reduction is undefined)"))
    for _, row, cell in report.cells():
        if cell.fields.get("metric") == "semantic_noise_reduction_percent":
            cell.ours, cell.where = reduction, where
    report.sections.append(Section("Semantic-noise points (ours)", [
        Row(label, [Cell("noise points", {"metric": "noise_points"}, ours=float(n), where=where),
                    Cell("images", {"metric": "images"}, ours=float(len(paths)))]) for label, n in counts.items()],
        notes=[f"A semantic-noise point: the tuned model's nine-class confidence > {SEMANTIC_CONFIDENCE} on the class the "
               "original CLIP gives, while its quality prediction lies on the other side of the median than the MOS "
               "(docs/reproduce.md)."], ours_only=True))


# -- GRMP-IQA Fig. 2 ------------------------------------------------------------------------------------------
def grmp_fig2(ctx: RunContext, out_dir: Path, report: Report) -> None:
    from .targets import FIG2_STEPS

    values: dict[str, list[float]] = {}
    for run in FIG2_STEPS:
        label = run.folder.replace("grmp-fig2-", "").replace("-", " ")
        values[label] = RunResults(ctx.run_dir(run)).split_values("livec", "srcc", k=50)
    rows = []
    for label, srcc in values.items():
        finite = [v for v in srcc if math.isfinite(v)]
        cells = [Cell("splits", {"metric": "n_splits"}, ours=float(len(srcc)))]
        for name, function in (("median SRCC", statistics.median), ("min SRCC", min), ("max SRCC", max)):
            cells.append(Cell(name, {"metric": name}, ours=function(finite) if finite else None))
        rows.append(Row(label, cells))
    report.sections.append(Section("SRCC of 50-shot CoOp-style tuning on LIVEC per text-context start (ours)", rows,
                                   ours_only=True))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    labels = list(values)
    ax.boxplot([values[k] or [math.nan] for k in labels], showfliers=False)
    for i, label in enumerate(labels, start=1):
        ax.scatter(np.full(len(values[label]), i), values[label], s=12, color="tab:blue", zorder=3)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=20, fontsize=8)
    ax.set_ylabel("SRCC (LIVEC, 50 images)")
    ax.set_title("Sensitivity to the text-context start (no meta-learning, lambda 0)", fontsize=9)
    ax.grid(alpha=0.3)
    path = out_dir / "fig2_init_sensitivity.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    report.figures.append(Figure(path, "GRMP-IQA Fig. 2: SRCC over splits for each text-context start"))


# -- GRMP-IQA Fig. 4 ------------------------------------------------------------------------------------------
def grmp_fig4(ctx: RunContext, out_dir: Path, report: Report) -> None:
    from ..training.plots import angle_series, plot_gradient_angle, plot_srcc_per_epoch, srcc_curves
    from .targets import GRMP_QGR

    units = {"w/o QGR": _unit(ctx.run_dir(GRMP_QGR["without-qgr"]), "koniq10k-k50"),
             "w/ QGR": _unit(ctx.run_dir(GRMP_QGR["with-qgr"]), "koniq10k-k50")}
    report.figures.append(Figure(plot_srcc_per_epoch(units, out_dir / "fig4a_srcc_per_epoch.png"),
                                 f"GRMP-IQA Fig. 4a: test SRCC per epoch ({units['w/ QGR'].name})"))
    report.figures.append(Figure(plot_gradient_angle(units, out_dir / "fig4b_gradient_angle.png"),
                                 "GRMP-IQA Fig. 4b: angle between G_qua and G_sem per step"))
    rows = []
    for label, unit in units.items():
        curves = srcc_curves(unit / "epochs.jsonl")
        final = [ys[-1] for _, ys in curves.values()]
        angles = angle_series(unit / "steps.jsonl")[1]
        rows.append(Row(label, [Cell("final SRCC", {"metric": "srcc"}, ours=final[0] if final else None, where=unit.name),
                                Cell("mean angle (deg)", {"metric": "angle"}, ours=statistics.fmean(angles) if angles else None),
                                Cell("steps", {"metric": "steps"}, ours=float(len(angles)))]))
    report.sections.append(Section("The runs plotted (ours)", rows, ours_only=True))


# -- GRMP-IQA Fig. 5: gMAD ------------------------------------------------------------------------------------
WATERLOO_DISTORTIONS = ("jpeg", "jpeg2000", "gaussian_blur", "white_noise")   # the database's four types


def waterloo_images(ctx: RunContext) -> tuple[list[str], str]:
    """The pristine Waterloo images and, synthesised once under ``<runs>/waterloo-distorted``, their versions
    with the database's four distortion types at five levels (the release ships MATLAB code, not images)."""
    from ..data import load_dataset
    from ..data.synthetic import synthesize

    dataset = load_dataset("waterloo", ctx.roots["waterloo"], missing=ctx.missing)
    pristine = [str(s.path) for s in dataset.samples]
    folder = Path(dataset.samples[0].path).parent
    out = Path(ctx.runs_dir) / "waterloo-distorted"
    labels = out / "labels.csv"
    if not labels.is_file():
        synthesize(folder, out, types=list(WATERLOO_DISTORTIONS), levels=(1, 2, 3, 4, 5), max_side=None)
    import csv

    with open(labels, newline="", encoding="utf-8") as handle:
        distorted = [str(out / row["path"]) for row in csv.DictReader(handle)]
    return pristine + distorted, f"{len(pristine)} pristine + {len(distorted)} distorted (4 types x 5 levels)"


def gmad_pairs(defender: np.ndarray, attacker: np.ndarray, quantile: float, band: int) -> tuple[int, int]:
    """gMAD (Ma et al. 2016): among the ``band`` images whose defender scores are closest to the
    defender's ``quantile`` level (the defender calls them equally good), the pair the attacker
    separates most: (index of the attacker's best, index of its worst)."""
    level = np.quantile(defender, quantile)
    near = np.argsort(np.abs(defender - level), kind="stable")[:max(2, band)]
    return int(near[np.argmax(attacker[near])]), int(near[np.argmin(attacker[near])])


def grmp_fig5(ctx: RunContext, out_dir: Path, report: Report) -> None:
    from PIL import Image

    from ..inference import load_model
    from .targets import FIG5_LIVE

    run_dir = ctx.run_dir(FIG5_LIVE)
    recipe = RunResults(run_dir).recipe
    ours = load_model(str(_unit(run_dir, "live") / "model.safetensors"), device=str(ctx.device), precision="fp32")
    rival_name = ctx.options.get("rival") or "zero-shot"
    model = recipe["model"]
    rival = (load_model(rival_name, device=str(ctx.device), precision="fp32") if Path(rival_name).exists() else
             load_model(rival_name, backbone=model.get("backbone"), weights=model.get("weights"),
                        device=str(ctx.device), precision="fp32"))
    paths, described = waterloo_images(ctx)
    scores = {"GRMP-IQA": np.asarray(ours.score(paths)), rival_name: np.asarray(rival.score(paths))}
    band = max(2, math.ceil(0.01 * len(paths)))
    panels, rows = [], []
    for defender, attacker in (("GRMP-IQA", rival_name), (rival_name, "GRMP-IQA")):
        for level, quantile in (("low", 0.1), ("high", 0.9)):
            best, worst = gmad_pairs(scores[defender], scores[attacker], quantile, band)
            panels.append((f"fixed {defender} at {level} quality; {attacker} attacks", best, worst, defender, attacker))
            d, a = scores[defender], scores[attacker]
            rows.append(Row(f"fixed {defender}, {level}", [
                Cell(f"{defender} (defender) on the pair", {"metric": "defender"}, ours=float(abs(d[best] - d[worst])),
                     where=f"|difference|; {Path(paths[best]).name} vs {Path(paths[worst]).name}"),
                Cell(f"{attacker} (attacker) gap", {"metric": "attacker"}, ours=float(a[best] - a[worst]))]))
    plt = pyplot()
    fig, axes = plt.subplots(2, len(panels), figsize=(3.0 * len(panels), 6.0), squeeze=False)
    for column, (title, best, worst, defender, attacker) in enumerate(panels):
        for row, (index, name) in enumerate(((best, "best"), (worst, "worst"))):
            ax = axes[row][column]
            with Image.open(paths[index]) as image:
                ax.imshow(image.convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{attacker} {name}: {scores[attacker][index]:.3f}\n{defender}: {scores[defender][index]:.3f}",
                          fontsize=7)
        axes[0][column].set_title(f"({'abcd'[column]}) {title}", fontsize=8)
    fig.suptitle(f"gMAD on the Waterloo Exploration Database ({described})", fontsize=9)
    path = out_dir / "fig5_gmad.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    report.figures.append(Figure(path, f"GRMP-IQA Fig. 5: gMAD between GRMP-IQA (trained on all of LIVE) and "
                                       f"{rival_name}; each column: the defender's level fixed, the attacker's best "
                                       "(top) and worst (bottom) image"))
    report.sections.append(Section(f"gMAD pairs (ours; {len(paths)} images, level band of {band} images)", rows,
                                   notes=["A good defender keeps its scores of the pair close while the attacker's "
                                          "differ; a good attacker finds pairs whose quality visibly differs."],
                                   ours_only=True))


# -- GRMP-IQA AGIQA-3K ----------------------------------------------------------------------------------------
def grmp_agiqa3k(ctx: RunContext, out_dir: Path, report: Report) -> None:
    from .targets import AGIQA_FEWSHOT

    results = RunResults(ctx.run_dir(AGIQA_FEWSHOT))
    rows = []
    for shots in (50, 100, 200):
        cells = []
        for metric in ("srcc", "plcc"):
            found = results.find("agiqa3k", metric, k=shots)
            cells.append(Cell(metric.upper(), {"dataset": "agiqa3k", "shots": shots, "metric": metric},
                              ours=found.value, where=found.where, n_splits=found.n_splits))
        rows.append(Row(f"{shots} images", cells))
    report.sections.append(Section("AGIQA-3K few-shot (ours; the paper's numbers are in its supplementary material)",
                                   rows, ours_only=True))


# -- Gamma Fig. 5a --------------------------------------------------------------------------------------------
def gamma_fig5a(ctx: RunContext, out_dir: Path, report: Report) -> None:
    from .targets import GAMMA_EXPERTS, GAMMA_LAYERS

    curves = {}
    for key, table, runs, title in (("experts", "3", GAMMA_EXPERTS, "adaptive experts"),
                                    ("layers", "5", GAMMA_LAYERS, "MoAE layers (last K blocks)")):
        rows, xs, paper_ys, our_ys = [], [], [], []
        for x, run in runs.items():
            numbers = paper_numbers("Gamma", table, metric="srcc", **{key: x})
            paper = statistics.fmean(n.value for n in numbers)
            results = RunResults(ctx.run_dir(run))
            ours = [results.find(n.get("dataset"), "srcc").value for n in numbers]
            mean = statistics.fmean(ours) if all(v is not None for v in ours) else None
            datasets = ", ".join(dataset_label(n.get("dataset")) for n in numbers)
            rows.append(Row(f"{x} {key}", [Cell("mean SRCC", {"metric": "srcc", key: x}, paper, f"{paper:.3f}", mean,
                                                where=f"{run.folder}: mean over {datasets}")]))
            xs.append(x)
            paper_ys.append(paper)
            our_ys.append(math.nan if mean is None else mean)
        report.sections.append(Section(f"Gamma Fig. 5a: mean SRCC against the number of {title} (paper: mean of its "
                                       f"Table {table} row, derived)", rows))
        curves[title] = (xs, paper_ys, our_ys)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (title, (xs, paper_ys, our_ys)) in zip(axes, curves.items()):
        ax.plot(xs, paper_ys, marker="o", label="paper")
        ax.plot(xs, our_ys, marker="s", label="ours")
        ax.set_xlabel(f"number of {title}")
        ax.set_ylabel("mean SRCC")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    path = out_dir / "fig5a_experts_layers.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    report.figures.append(Figure(path, "Gamma Fig. 5a: mean SRCC against the number of experts and of MoAE layers"))


# -- Gamma Fig. 5b --------------------------------------------------------------------------------------------
def gamma_fig5b(ctx: RunContext, out_dir: Path, report: Report, images_per_dataset: int = 200) -> None:
    from ..inference import load_model
    from ..models.analysis import ActivationRow, mean_router_activation, save_activation_chart
    from .targets import GAMMA_MIXED

    unit = _unit(ctx.run_dir(GAMMA_MIXED), "split00")
    assessor = load_model(str(unit / "model.safetensors"), device=str(ctx.device), precision="fp32")
    rows = []
    for dataset, (_, _, paths) in RunResults(ctx.run_dir(GAMMA_MIXED)).predictions(unit).items():
        activation, count = mean_router_activation(assessor.module, _pixels(assessor, paths[:images_per_dataset]))
        rows.append(ActivationRow(dataset, count, activation))
    path = save_activation_chart(rows, out_dir / "fig5b_router_activation.png")
    report.figures.append(Figure(path, f"Gamma Fig. 5b: mean router activation per expert, last visual MoAE layer "
                                       f"({unit.name}'s test images)"))
    report.sections.append(Section("Mean router activation, last visual MoAE layer (ours)", [
        Row(dataset_label(r.dataset), [Cell(f"expert {i + 1}", {"dataset": r.dataset, "metric": f"expert{i + 1}"},
                                            ours=float(v), where=f"{r.n_images} test images of {unit.name}")
                                       for i, v in enumerate(r.activation)]) for r in rows], ours_only=True))
