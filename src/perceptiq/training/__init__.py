"""Training: one trainer, objectives, QGR, the bi-level meta step, and the recipe runner."""
from .config import TrainConfig
from .data import Batch, TrainItem, make_loader
from .objectives import bce_loss, get_loss, mse_loss
from .trainer import EpochRecord, Trainer, TrainResult

__all__ = ["TrainConfig", "Batch", "TrainItem", "make_loader", "bce_loss", "get_loss", "mse_loss",
           "EpochRecord", "Trainer", "TrainResult"]
