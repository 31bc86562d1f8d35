"""Supervised learning: cross-entropy for classes, mean squared error for regression targets."""
import torch
from torch import nn
from torch.nn import functional as F

from ML.agents.update import Update
from ML.specs import Batch, Counters, Spec


class Classifier(nn.Module):
    def __init__(self, eyes: nn.Module, model: nn.Module, optim, label_spec: Spec, scheduler=None,
                 update: Update = None):  # the optimizer step (precision, clipping, accumulation); None: plain fp32
        super().__init__()
        self.eyes, self.model = eyes, model
        self.regression = not label_spec.discrete
        self.optim = optim(self.parameters())
        self.scheduler = scheduler(self.optim) if scheduler else None
        self.update = update if update is not None else Update()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.model(self.eyes(obs))

    def act(self, obs: torch.Tensor, counters: Counters = None, greedy: bool = True) -> torch.Tensor:
        with torch.no_grad():
            output = self(obs)
        return output if self.regression else output.argmax(-1)

    def learn(self, batch: Batch, counters: Counters) -> dict:
        with self.update.autocast():
            output = self(batch.obs)
            if self.regression:
                loss = F.mse_loss(output, batch.label.view_as(output).to(output.dtype))
            else:
                loss = F.cross_entropy(output, batch.label)
        self.update(loss, self.optim, self.scheduler)
        return {'loss': loss.detach()}  # a tensor: read only on the steps the logger writes (no sync per step)
