"""`tg.models`: reference architectures (torchvision's)."""

from .resnet import BasicBlock, ResNet, resnet18

__all__ = ["BasicBlock", "ResNet", "resnet18"]
