"""Reproduce targets: one per table and figure of GRMP-IQA and Gamma.

A :class:`Target` names the recipe runs it needs (:class:`~perceptiq.reproduce.runs.RunStep`; runs their
``model.init`` depends on are added), the paper tables it puts beside ours, and how each paper cell is
read from the runs (``locate``: which run and which setting; dataset and metric come from the cell).
Figure targets add their own computation (``figure``). Nothing here imports torch: ``--list`` is fast.

A paper cell whose ``dataset`` is ``average`` is, on our side, the mean of our values in the same row
and metric, as the paper averages its own row (Gamma Tables 12-14).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .results import ANY, Found, RunResults
from .runs import RunContext, RunStep, step

Locate = Callable[[dict, RunContext], "Found | tuple[RunStep, dict] | None"]


@dataclass(frozen=True)
class Target:
    """What ``perceptiq reproduce NAME`` does.

    tables: (paper, table) pairs whose stored numbers the report compares (every row of each).
    locate(fields, ctx): for one paper cell, either (step, params) -- the run and the exact setting whose
        median ``fields['metric']`` of ``fields['dataset']`` is ours -- or a ready ``Found``, or None
        (the cell has no counterpart here; the report says so).
    figure(ctx, out_dir, report): extra computation and PNGs (figure targets).
    extra_datasets: datasets read outside the recipes (e.g. Waterloo for gMAD).
    """

    name: str
    paper: str
    title: str
    steps: tuple[RunStep, ...] = ()
    tables: tuple[tuple[str, str], ...] = ()
    locate: Locate | None = None
    figure: Callable | None = None
    extra_datasets: tuple[str, ...] = ()
    notes: str = ""
    scatter: bool = True
    options: dict = field(default_factory=dict)


def _by(key: str, steps: dict[Any, RunStep], params: Callable[[dict], dict] = lambda f: {}) -> Locate:
    """Pick the run by the cell's ``key`` field (e.g. variant, method, experts); ``params`` gives the setting."""
    def locate(fields: dict, ctx: RunContext):
        run = steps.get(fields.get(key))
        return None if run is None else (run, params(fields))
    return locate


def _one(run: RunStep, params: Callable[[dict], dict] = lambda f: {}) -> Locate:
    return lambda fields, ctx: (run, params(fields))


def _shots(fields: dict) -> dict:
    return {"k": int(fields["shots"])}


# -- GRMP-IQA ----------------------------------------------------------------------------------------------
GRMP_FEWSHOT = step("grmp-fewshot")
GRMP_FULL, GRMP_EFFICIENT = step("grmp-full"), step("grmp-full", "data-efficient")
GRMP_CROSS = step("grmp-cross")
GRMP_ZEROSHOT = {v: step("grmp-zeroshot", None if v == "full" else v)
                 for v in ("clip", "encoders", "text-only", "visual-only", "erm", "full")}
GRMP_INIT = {"none": step("grmp-init-ablation", "none"), "erm": step("grmp-init-ablation", "erm"),
             "meta": step("grmp-init-ablation")}
GRMP_QGR = {"with-qgr": step("grmp-qgr-ablation"), "without-qgr": step("grmp-qgr-ablation", "without-qgr")}
GRMP_LAMBDA = {"lam1": step("grmp-lambda", "lam1"), "lam2": step("grmp-lambda", "lam2"),
               "lam5": step("grmp-lambda"), "lam10": step("grmp-lambda", "lam10")}

# Fig. 2: CoOp-style tuning (no meta-learning, lambda 0) from different text-context starts, LIVEC, 50 images
FIG2_PHRASES = ("a photo of a", "a picture of a", "an image of a")
FIG2_SEEDS = (0, 1, 2)


def _fig2_step(init: str, seed: int) -> RunStep:
    slug = "random-seed%d" % seed if init == "random" else init.replace(" ", "-")
    return step("grmp-init-ablation", "none", "protocol.datasets=[livec]", "protocol.shots=[50]",
                f"model.options.ctx_init={init!r}" if init != "random" else "model.options.ctx_init=random",
                f"model.options.seed={seed}", name=f"grmp-fig2-{slug}")


FIG2_STEPS = tuple([_fig2_step(p, 0) for p in FIG2_PHRASES] + [_fig2_step("random", s) for s in FIG2_SEEDS])
FIG5_LIVE = step("grmp-cross", None, "protocol.pairs=[[live, live]]", name="grmp-fig5-live")
AGIQA_FEWSHOT = step("grmp-fewshot", None, "protocol.datasets=[agiqa3k]", name="grmp-fewshot-agiqa3k")

# -- Gamma ----------------------------------------------------------------------------------------------------
GAMMA_MIXED, GAMMA_SDP, GAMMA_TASK = step("gamma-mixed"), step("gamma-mixed-sdp"), step("gamma-task")
GAMMA_EXPERTS = {0: step("gamma-mixed", "experts-0"), 1: step("gamma-mixed", "experts-1"), 3: GAMMA_MIXED,
                 5: step("gamma-mixed", "experts-5")}
GAMMA_LAYERS = {0: step("gamma-mixed", "layers-0"), 4: step("gamma-mixed", "layers-4"), 6: GAMMA_MIXED,
                8: step("gamma-mixed", "layers-8"), 12: step("gamma-mixed", "layers-12")}
GAMMA_TABLE2 = {("no", "no"): GAMMA_LAYERS[0], ("no", "yes"): step("gamma-mixed-sdp", "layers-0"),
                ("yes", "no"): GAMMA_MIXED, ("yes", "yes"): GAMMA_SDP}
GAMMA_CONFIG = {"unfreeze-shared": step("gamma-mixed", "unfreeze-shared"), "no-sigma": step("gamma-mixed", "no-sigma"),
                "default": GAMMA_MIXED}
GAMMA_SINGLE = step("gamma-mixed", "single-experts")
GAMMA_TRANSFER = {"default": step("gamma-transfer"), "from-mixed": step("gamma-transfer", "from-mixed")}
GAMMA_LIQE6 = step("gamma-liqe6")
GAMMA_LIQE6_ZS = {"default": step("gamma-liqe6-zeroshot"), "mixed12": step("gamma-liqe6-zeroshot", "mixed12")}
GAMMA_QALIGN3 = step("gamma-qalign3")
# Table 15: one SDP training, each test part scored again with the general, quality and SDP prompts
# swapped in at test time (docs/gamma.md; result rows carry test_prompt=<style>)
GAMMA_PROMPTS = step("gamma-mixed-sdp", "prompt-sensitivity")


def _gamma_table2(fields: dict, ctx: RunContext):
    run = GAMMA_TABLE2.get((fields.get("moae"), fields.get("sdp")))
    return None if run is None else (run, {})


def _gamma_table5(fields: dict, ctx: RunContext):
    run = GAMMA_LAYERS.get(fields.get("layers"))
    if run is None:
        return None
    metric = fields.get("metric")
    if metric == "params_m":
        from .measures import total_parameters_millions

        return total_parameters_millions(run, ctx)
    if metric == "train_hours":
        from .measures import training_hours

        return training_hours(run, ctx)
    return run, {}


def _gamma_table6(fields: dict, ctx: RunContext):
    forced = fields.get("force_expert")
    return GAMMA_SINGLE, ({} if forced in (None, "none") else {"force_expert": int(forced)})


def _gamma_table8(fields: dict, ctx: RunContext):
    from .measures import recipe_setting

    return recipe_setting(GAMMA_TASK, fields["dataset"], fields["metric"], ctx)


def _grmp_table2(fields: dict, ctx: RunContext):
    return (GRMP_EFFICIENT, {"fraction": ANY}) if fields.get("ratio") == "efficient" else (GRMP_FULL, {})


# -- the targets -------------------------------------------------------------------------------------------------
def _figure(name: str) -> Callable:
    """A figure target's computation, imported when it runs (it needs torch, matplotlib, sklearn)."""
    def run(ctx, out_dir, report):
        from . import figures

        return getattr(figures, name)(ctx, out_dir, report)
    return run


TARGETS: tuple[Target, ...] = (
    Target("grmp-table1", "GRMP-IQA", "Table 1: few-shot SRCC (50/100/200 images) on LIVEC, KonIQ, CSIQ, LIVE, PIPAL",
           (GRMP_FEWSHOT,), (("GRMP-IQA", "1"),), _one(GRMP_FEWSHOT, _shots)),
    Target("grmp-table2", "GRMP-IQA", "Table 2: fully supervised (80 %) and data-efficient (10-30 %) training",
           (GRMP_FULL, GRMP_EFFICIENT), (("GRMP-IQA", "2"),), _grmp_table2),
    Target("grmp-table3", "GRMP-IQA", "Table 3: cross-dataset SRCC",
           (GRMP_CROSS,), (("GRMP-IQA", "3"),), _one(GRMP_CROSS, lambda f: {"train": f["source"]})),
    Target("grmp-table4", "GRMP-IQA", "Table 4: zero-shot ablation of meta-learning, text and visual prompts",
           tuple(GRMP_ZEROSHOT.values()), (("GRMP-IQA", "4"),), _by("variant", GRMP_ZEROSHOT)),
    Target("grmp-table5", "GRMP-IQA", "Table 5: starting point of 50-shot tuning (none, ERM, meta-learned), lambda 0",
           tuple(GRMP_INIT.values()), (("GRMP-IQA", "5"),), _by("variant", GRMP_INIT, _shots)),
    Target("grmp-table6", "GRMP-IQA", "Table 6 (and Fig. 4): few-shot tuning with and without QGR",
           tuple(GRMP_QGR.values()), (("GRMP-IQA", "6"),), _by("variant", GRMP_QGR, _shots)),
    Target("grmp-table7", "GRMP-IQA", "Table 7: soft weight lambda of QGR on KonIQ",
           tuple(GRMP_LAMBDA.values()), (("GRMP-IQA", "7"),), _by("variant", GRMP_LAMBDA, _shots)),
    Target("grmp-fig1", "GRMP-IQA", "Fig. 1: t-SNE of image features after CoOp-style (lambda 0) and GRMP-IQA tuning, "
           "semantic-noise points", tuple(GRMP_QGR.values()), (("GRMP-IQA", "Fig. 1"),), None,
           _figure("grmp_fig1")),
    Target("grmp-fig2", "GRMP-IQA", "Fig. 2: sensitivity of 50-shot prompt tuning (LIVEC) to the text-context start",
           FIG2_STEPS, (), None, _figure("grmp_fig2"),
           notes="The figure has no printed numbers; the report gives our SRCC per start over the splits."),
    Target("grmp-fig4", "GRMP-IQA", "Fig. 4: SRCC per epoch and angle between G_qua and G_sem, with and without QGR",
           tuple(GRMP_QGR.values()), (), None, _figure("grmp_fig4")),
    Target("grmp-fig5", "GRMP-IQA", "Fig. 5: gMAD on the Waterloo Exploration Database, GRMP-IQA trained on all of LIVE "
           "against a rival model", (FIG5_LIVE,), (), None, _figure("grmp_fig5"), extra_datasets=("waterloo",),
           options={"rival": "zero-shot"}),
    Target("grmp-agiqa3k", "GRMP-IQA", "AGIQA-3K few-shot SRCC/PLCC (50/100/200 images; the paper's supplementary)",
           (AGIQA_FEWSHOT,), (), None, _figure("grmp_agiqa3k"),
           notes="The AGIQA-3K numbers are in the paper's supplementary material, which is not in the available "
                 "text: the report gives ours only."),
    Target("gamma-table1", "Gamma", "Table 1: Gamma-T (task-specific), Gamma (mixed) and Gamma-dagger (mixed, SDP) on 12 datasets",
           (GAMMA_TASK, GAMMA_MIXED, GAMMA_SDP), (("Gamma", "1"),),
           _by("method", {"gamma-t": GAMMA_TASK, "gamma": GAMMA_MIXED, "gamma-sdp": GAMMA_SDP})),
    Target("gamma-table2", "Gamma", "Table 2: MoAE and scene-based differential prompts",
           tuple(GAMMA_TABLE2.values()), (("Gamma", "2"),), _gamma_table2),
    Target("gamma-table3", "Gamma", "Table 3: number of adaptive experts",
           tuple(GAMMA_EXPERTS.values()), (("Gamma", "3"),), _by("experts", GAMMA_EXPERTS)),
    Target("gamma-table4", "Gamma", "Table 4: frozen shared expert and merging factor sigma",
           tuple(GAMMA_CONFIG.values()), (("Gamma", "4"),), _by("variant", GAMMA_CONFIG)),
    Target("gamma-table5", "Gamma", "Table 5: MoAE in the last K blocks (with parameters and training time)",
           tuple(GAMMA_LAYERS.values()), (("Gamma", "5"),), _gamma_table5),
    Target("gamma-table6", "Gamma", "Table 6: one adaptive expert kept at test time",
           (GAMMA_SINGLE,), (("Gamma", "6"),), _gamma_table6),
    Target("gamma-table7", "Gamma", "Table 7: new domains (exBeDDE, ECIQAD), from CLIP weights or the mixed model",
           tuple(GAMMA_TRANSFER.values()), (("Gamma", "7"),), _by("variant", GAMMA_TRANSFER)),
    Target("gamma-table8", "Gamma", "Table 8: task-specific training settings (the recipe against the paper)",
           (), (("Gamma", "8"),), _gamma_table8, scatter=False,
           notes="No training: the gamma-task recipe's per-dataset epochs and batch sizes, as they would run "
                 "(after --set), beside the paper's."),
    Target("gamma-table12", "Gamma", "Table 12: Gamma-dagger on LIQE's six datasets",
           (GAMMA_LIQE6,), (("Gamma", "12"),), _one(GAMMA_LIQE6)),
    Target("gamma-table13", "Gamma", "Table 13: cross-dataset SRCC of the six- and 12-dataset models",
           tuple(GAMMA_LIQE6_ZS.values()), (("Gamma", "13"),), _by("variant", GAMMA_LIQE6_ZS)),
    Target("gamma-table14", "Gamma", "Table 14: Gamma-dagger on Q-Align's three datasets",
           (GAMMA_QALIGN3,), (("Gamma", "14"),), _one(GAMMA_QALIGN3)),
    Target("gamma-table15", "Gamma", "Table 15: prompt sensitivity of the SDP model (prompts swapped at test time)",
           (GAMMA_PROMPTS,), (("Gamma", "15"),), _one(GAMMA_PROMPTS, lambda f: {"test_prompt": f["prompt"]})),
    Target("gamma-fig5a", "Gamma", "Fig. 5a: mean SRCC against the number of experts (Table 3) and of MoAE layers (Table 5)",
           tuple(dict.fromkeys([*GAMMA_EXPERTS.values(), *GAMMA_LAYERS.values()])), (), None, _figure("gamma_fig5a"),
           notes="The paper's curve points are the means of its Table 3 / Table 5 SRCC rows (derived here, not printed)."),
    Target("gamma-fig5b", "Gamma", "Fig. 5b: mean router activation of each expert per dataset (last visual MoAE layer)",
           (GAMMA_MIXED,), (), None, _figure("gamma_fig5b"),
           notes="The figure has no printed numbers; the report gives ours."),
)

COMPARE = "compare"


def target_names() -> list[str]:
    return [t.name for t in TARGETS] + [COMPARE]


def get_target(name: str) -> Target:
    for target in TARGETS:
        if target.name == name:
            return target
    from ..suggestions import did_you_mean

    hint = did_you_mean(name, target_names())
    raise KeyError(f"unknown reproduce target '{name}'.{hint} `perceptiq reproduce --list` lists them.")


def target_steps(target: Target, overrides: Sequence[str] = ()) -> list[RunStep]:
    from .runs import with_dependencies

    return with_dependencies(target.steps, overrides)
