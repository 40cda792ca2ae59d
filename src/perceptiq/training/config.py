"""Training settings as one dataclass; recipes fill it, the command line overrides it."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "cosine", "step")
STEPS = ("standard", "qgr")
QGR_GRANULARITIES = ("whole", "per-tensor")   # = training.qgr.GRANULARITIES (config imports no torch code)
LOSSES = ("mse", "bce", "bce+rank")


@dataclass
class TrainConfig:
    """One training run's settings (per-epoch learning-rate schedule; see ``lr_at``).

    Defaults are Gamma's mixed training (section 4.2): Adam, lr 2e-5, 10 epochs, batch 8, MSE.
    """

    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "adam"
    lr: float = 2e-5
    weight_decay: float = 0.0
    momentum: float = 0.9                 # SGD only
    scheduler: str = "constant"           # constant | cosine (over the decay epochs) | step
    decay_epochs: int | None = None       # cosine: epochs the decay spans (default: all after warm-up)
    step_every: int = 2                   # step scheduler: multiply by step_gamma every step_every epochs
    step_gamma: float = 0.9
    warmup_epochs: int = 0                # CoOp: one warm-up epoch at a constant small lr
    warmup_lr: float = 1e-5
    loss: str = "mse"                     # mse (Gamma) | bce (GRMP Eq. 3) | bce+rank (built-in model)
    rank_weight: float = 1.0              # bce+rank: weight of the within-image ranking term
    step: str = "standard"                # standard | qgr (GRMP Eq. 7-8)
    qgr_lambda: float = 5.0
    qgr_granularity: str = "whole"        # whole (one vector; the paper) | per-tensor (Eq. 8 per parameter tensor)
    crops_per_image: int = 1              # GRMP fully supervised: 10 random crops per image
    train_resize: int | None = None       # short side before the random crop; None = native size (default)
    dataset_resize: dict[str, int] = field(default_factory=dict)  # per dataset short side (train and test)
    test_view: str = "resize"             # how test images are seen (imaging views: resize | crops:N...)
    crop: int = 224
    hflip: bool = True
    balanced: bool = False                # dataset-balanced sampling instead of concatenation
    precision: str = "fp32"               # fp32 | bf16 | auto
    grad_checkpointing: bool = False
    workers: int = 0
    seed: int = 0
    eval_every: int = 1                   # evaluate the test parts every N epochs (and always at the end)
    eval_batch_size: int = 32
    max_steps_per_epoch: int | None = None  # cap for smoke tests and benchmarks
    save_every_epoch: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, allowed in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("step", STEPS),
                              ("qgr_granularity", QGR_GRANULARITIES),
                              ("loss", LOSSES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"train.{name} = {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("train.epochs and train.batch_size must be >= 1")
        from ..imaging.views import ViewError, parse_view

        try:
            view = parse_view(self.test_view)
        except ViewError as err:
            raise ValueError(f"train.test_view = {self.test_view!r}: {err}") from None
        if view.kind == "full":
            raise ValueError("train.test_view = full: a recipe's test view must be resize or crops:N "
                             "(score with --view full instead)")
        self.test_view = str(view)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        from ..suggestions import refuse_unknown_keys

        refuse_unknown_keys(values, (f.name for f in dataclasses.fields(cls)), what="training setting")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lr_at(self, epoch: int) -> float:
        """Learning rate for epoch ``epoch`` (0-based): warm-up, then the schedule."""
        if epoch < self.warmup_epochs:
            return self.warmup_lr
        t = epoch - self.warmup_epochs
        if self.scheduler == "constant":
            return self.lr
        if self.scheduler == "step":
            return self.lr * self.step_gamma ** (t // self.step_every)
        span = self.decay_epochs or max(1, self.epochs - self.warmup_epochs)
        return 0.5 * self.lr * (1 + math.cos(math.pi * min(t, span) / span))
