"""The study's Inception-AlexNet in PyTorch (SPEC section 2), for side-by-side timing.

Same layer list as src/model/model.c: Conv(k, same, bias) -> BatchNorm -> ReLU blocks,
four-branch Inception modules, modes 1/2/3 with bottleneck factor alpha.
"""
import torch
from torch import nn


def block(cin, cout, k, batchnorm=True):
    layers = [nn.Conv2d(cin, cout, k, padding=k // 2)]
    if batchnorm:
        layers += [nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def branch(cin, f, k, mode, alpha):
    if mode == 1:
        return block(cin, f, k)
    if mode == 2:
        return nn.Sequential(block(cin, f // alpha, 1), block(f // alpha, f, k))
    return nn.Sequential(block(cin, f // alpha, 1), block(f // alpha, f // alpha, k),
                         block(f // alpha, f, 1))


class Inception(nn.Module):
    def __init__(self, cin, out, mode, alpha, keras_pool_branch=True):
        super().__init__()
        self.b1 = block(cin, out // 4, 1)
        self.b3 = branch(cin, out // 2, 3, mode, alpha)
        self.b5 = branch(cin, out // 8, 5, mode, alpha)
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1),
                                  block(cin, out // 8, 1, batchnorm=keras_pool_branch))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1)


def inception_alexnet(mode, alpha, in_channels=3, keras_pool_branch=True):
    return nn.Sequential(
        Inception(in_channels, 96, mode, alpha, keras_pool_branch), nn.AvgPool2d(2),
        Inception(96, 256, mode, alpha, keras_pool_branch), nn.AvgPool2d(2),
        Inception(256, 384, mode, alpha, keras_pool_branch),
        Inception(384, 384, mode, alpha, keras_pool_branch),
        Inception(384, 256, mode, alpha, keras_pool_branch),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))


PATTERNS = {"A": (1, 1), "B": (2, 2), "C": (2, 4), "D": (3, 2), "E": (3, 4)}


def keras_param_count(model):
    """Trainable parameters plus BatchNorm running mean and variance (the Keras count)."""
    trainable = sum(p.numel() for p in model.parameters())
    running = sum(m.running_mean.numel() * 2 for m in model.modules()
                  if isinstance(m, nn.BatchNorm2d))
    return trainable + running
