"""``perceptiq reproduce-builtin``: the built-in model against the classical baselines, on held-out photographs.

One run, one table (issue 11's protocol, ``perceptiq.evaluation.level_ranking``):

1. the held-out photographs (another source than the training ones) are distorted with all 25 types x 5
   levels of ``perceptiq.data.synthetic`` at ``max_side`` (reused when the work folder holds the same);
2. NIQE is fitted on the *training* photographs, shrunk to the same ``max_side``;
3. NIQE, the variance of the Laplacian, the previous built-in model and the candidate model score every
   image (pristine and distorted) in the same run; each model with its default view unless told;
4. the summary table (pooled SRCC/PLCC/KRCC against the level, per-type median within-image SRCC, pristine
   win rate) with issue 11's bars, and the per-type table, as Markdown + JSON;
5. where each scorer's pooled SRCC goes (``perceptiq.evaluation.level_diagnosis``: content spread against
   calibration across types), and the candidate's mean drop per type and level.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..classical import LaplacianVariance, NIQEModel
from ..data.synthetic import synthesize
from ..data.synthetic.colour import to_uint8
from ..data.synthetic.sources import list_source_images, load_pristine
from ..evaluation.level_diagnosis import (
    DIAGNOSIS_NUMBERS,
    LevelDiagnosis,
    diagnose_levels,
    render_diagnosis_table,
    render_drop_table,
)
from ..evaluation.level_ranking import (
    ISSUE11_BARS,
    LevelRankingResult,
    beats,
    evaluate_level_ranking,
    render_per_type_table,
    render_summary_table,
    rows_from_synthetic,
)

BASELINE_MODELS = ("perceptiq-tiny-v1",)


@dataclass
class BuiltinReport:
    results: list[LevelRankingResult]
    candidate: str
    timings: dict[str, float]
    header: list[str] = field(default_factory=list)
    diagnoses: list[LevelDiagnosis] = field(default_factory=list)

    @property
    def candidate_result(self) -> LevelRankingResult:
        return next(r for r in self.results if r.scorer == self.candidate)

    def _diagnosis_markdown(self) -> list[str]:
        if not self.diagnoses:
            return []
        candidate = next(d for d in self.diagnoses if d.scorer == self.candidate)
        return ["## Where the pooled SRCC goes", "", render_diagnosis_table(self.diagnoses), "",
                render_drop_table(candidate), ""]

    def beats_every_baseline(self) -> dict[str, dict[str, bool]]:
        return {r.scorer: beats(self.candidate_result, r) for r in self.results if r.scorer != self.candidate}

    def markdown(self) -> str:
        lines = list(self.header)
        lines += ["", render_summary_table(self.results, bars=ISSUE11_BARS), "",
                  render_per_type_table(self.results), ""]
        lines += self._diagnosis_markdown()
        bars = self.candidate_result.meets(ISSUE11_BARS)
        lines.append(f"{self.candidate}: bars " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in bars.items()))
        for baseline, wins in self.beats_every_baseline().items():
            lost = [k for k, v in wins.items() if not v]
            lines.append(f"{self.candidate} vs {baseline}: " + ("better on every summary number" if not lost
                                                              else "NOT better on " + ", ".join(lost)))
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {"candidate": self.candidate, "header": self.header, "timings_s": self.timings,
                "summary": {r.scorer: r.summary() for r in self.results},
                "bars": self.candidate_result.meets(ISSUE11_BARS), "beats": self.beats_every_baseline(),
                "diagnosis": {d.scorer: {key: getattr(d, key) for key, _ in DIAGNOSIS_NUMBERS}
                              | {"drops": d.drops, "lowest_pristine": list(d.lowest_pristine)}
                              for d in self.diagnoses}}


def _photo_dir(photos: Path, role: str) -> Path:
    folder = Path(photos) / role
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: missing; `perceptiq fetch-photos -o {photos} --role all` writes "
                                "train/ and heldout/")
    return folder


def heldout_dataset(photos: Path, work_dir: Path, *, max_side: int, seed: int) -> Path:
    """Distortions of ``photos/heldout`` (reused when ``work_dir`` holds them for the same settings)."""
    heldout = _photo_dir(photos, "heldout")
    names = [p.name for p in list_source_images(heldout)]
    stamp = {"photos": names, "max_side": max_side, "seed": seed}
    stamp_file = work_dir / "heldout-settings.json"
    labels = work_dir / "heldout" / "labels.csv"
    if labels.is_file() and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return labels
    work_dir.mkdir(parents=True, exist_ok=True)
    labels = synthesize(heldout, work_dir / "heldout", seed=seed, max_side=max_side, overwrite=True)
    stamp_file.write_text(json.dumps(stamp, indent=1))
    return labels


def fitted_niqe(photos: Path, work_dir: Path, *, max_side: int) -> NIQEModel:
    """NIQE fitted on ``photos/train`` at ``max_side`` (cached in ``work_dir``)."""
    train = _photo_dir(photos, "train")
    paths = list_source_images(train)
    cache = work_dir / f"niqe-train-{max_side}.json"
    stamp = [p.name for p in paths]
    if cache.is_file():
        model = NIQEModel.load(cache)
        if model.fit_info.get("photos") == stamp:
            return model
    images = [to_uint8(load_pristine(p, max_side)) for p in paths]
    model = NIQEModel.fit(images)
    model.fit_info["photos"] = stamp
    work_dir.mkdir(parents=True, exist_ok=True)
    model.save(cache)
    return model


def score_with_model(name: str, paths: list[str], *, view: str | None, device: str = "cpu",
                     precision: str = "auto") -> tuple[np.ndarray, bool]:
    """Scores of a registered model or checkpoint (NaN for a file it could not score) and its direction."""
    import perceptiq

    model = perceptiq.load_model(name, device=device, precision=precision, view=view)
    scores = np.asarray(model.score(paths).scores, dtype=np.float64)
    return scores, bool(model.describe().get("higher_is_better", True))


def run_builtin_report(photos: Path, work_dir: Path, *, model: str = "perceptiq-tiny", max_side: int = 512,
                       seed: int = 1, views: dict[str, str] | None = None,
                       baselines: tuple[str, ...] = BASELINE_MODELS, limit_refs: int | None = None) -> BuiltinReport:
    work_dir = Path(work_dir)
    started = time.perf_counter()
    labels = heldout_dataset(photos, work_dir, max_side=max_side, seed=seed)
    synth_s = time.perf_counter() - started
    rows = rows_from_synthetic(labels)
    if limit_refs:
        keep = set(sorted({r.ref for r in rows})[:limit_refs])
        rows = [r for r in rows if r.ref in keep]
    paths = [r.path for r in rows]
    started = time.perf_counter()
    niqe = fitted_niqe(photos, work_dir, max_side=max_side)
    timings = {"synthesize": round(synth_s, 1), "niqe_fit": round(time.perf_counter() - started, 1)}
    scorers: dict[str, tuple[np.ndarray, bool]] = {}
    for measure in (niqe, LaplacianVariance()):
        started = time.perf_counter()
        scored = measure.score_many(paths)
        timings[measure.name] = round(time.perf_counter() - started, 1)
        scorers[measure.name] = (np.asarray(scored.scores, dtype=np.float64), measure.higher_is_better)
    views = views or {}
    for name in (*baselines, model):
        started = time.perf_counter()
        scorers[name] = score_with_model(name, paths, view=views.get(name))
        timings[name] = round(time.perf_counter() - started, 1)
    results = [evaluate_level_ranking(rows, scores, higher_is_better=direction, scorer=name)
               for name, (scores, direction) in scorers.items()]
    diagnoses = [diagnose_levels(rows, scores, higher_is_better=direction, scorer=name)
                 for name, (scores, direction) in scorers.items()]
    n_refs = len({r.ref for r in rows})
    header = [
        f"# Built-in model against the baselines: {n_refs} held-out photographs x 25 types x 5 levels "
        f"(max side {max_side}, synthesis seed {seed})",
        f"NIQE fitted on {niqe.fit_info.get('n_images')} training photographs at max side {max_side}; "
        f"machine: {platform.machine()} {_cpu_name()}; views: "
        + (", ".join(f"{k}={v}" for k, v in views.items()) if views else "each model's default"),
    ]
    return BuiltinReport(results, model, timings, header, diagnoses)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
