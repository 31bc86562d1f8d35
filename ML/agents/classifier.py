"""Supervised learning: cross-entropy for classes, mean squared error for regression targets."""
import torch
from torch import nn
from torch.nn import functional as F

from ML.agents.update import Update
from ML.errors import ConfigError
from ML.specs import Batch, Counters, Spec


class Classifier(nn.Module):
    def __init__(self, eyes: nn.Module, model: nn.Module, optim, label_spec: Spec, scheduler=None,
                 update: Update = None,        # the optimizer step (precision, clipping, accumulation); None: fp32
                 label_smoothing: float = 0.0,  # cross-entropy against targets mixed with uniform (Szegedy et al.
                                                # 2016); airbench: 0.2
                 tta_flip: bool = False,        # predict from the mean of the logits of each image and its mirror
                                                # (test-time augmentation; airbench's tta_level 1)
                 obs_spec: Spec = None):        # filled from the data, to refuse a mirror of what is no image
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f'agent.label_smoothing={label_smoothing}: a fraction in [0, 1)')
        if label_smoothing and not label_spec.discrete:
            raise ConfigError(f'agent.label_smoothing={label_smoothing}: smooths class labels; this dataset has float '
                              f'targets (a regression)')
        if tta_flip and obs_spec is not None and len(obs_spec.shape) != 3:
            raise ConfigError(f'agent.tta_flip=true: mirrors images (C, H, W); these observations are of shape '
                              f'{tuple(obs_spec.shape)}')
        self.eyes, self.model = eyes, model
        self.label_smoothing, self.tta_flip = label_smoothing, tta_flip
        self.regression = not label_spec.discrete
        self.optim = optim(self.parameters())
        self.scheduler = scheduler(self.optim) if scheduler else None
        self.update = update if update is not None else Update()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.model(self.eyes(obs))

    def act(self, obs: torch.Tensor, counters: Counters = None, greedy: bool = True) -> torch.Tensor:
        with torch.no_grad():
            output = self(obs) if not self.tta_flip else (self(obs) + self(obs.flip(-1))) / 2
        return output if self.regression else output.argmax(-1)

    def learn(self, batch: Batch, counters: Counters) -> dict:
        with self.update.autocast():
            output = self(batch.obs)
            if self.regression:
                loss = F.mse_loss(output, batch.label.view_as(output).to(output.dtype))
            else:
                loss = F.cross_entropy(output, batch.label, label_smoothing=self.label_smoothing)
        self.update(loss, self.optim, self.scheduler)
        return {'loss': loss.detach()}  # a tensor: read only on the steps the logger writes (no sync per step)
