"""`tg.optim`: SGD, Adam, AdamW with PyTorch's update rules and state dicts; `lr_scheduler`."""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
