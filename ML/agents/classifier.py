"""Supervised learning: cross-entropy for classes, mean squared error for regression targets."""
import torch
from torch import nn
from torch.nn import functional as F

from ML.agents.update import Update
from ML.errors import ConfigError
from ML.specs import Batch, Counters, Metrics, Spec


class Classifier(nn.Module):
    """Eyes -> Model trained with cross-entropy on class labels (label_spec discrete) or with the mean squared error
    on float targets.

    learn() returns, for train.csv, the loss of the learning step's batch and, for classes, its `accuracy`: the
    fraction of that batch's samples the model classified right before the step (each row shows the learning step
    it is written at, as its loss does). test() gives the evaluation on the test data the same loss, averaged over
    the test set by the world (eval.csv's `loss`)."""

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
            return self._prediction(self._output(obs))

    def loss(self, output: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The training loss of outputs (batch, classes) or (batch, *target) against labels (batch,) int64 class
        indices or (batch, *target) floats: cross-entropy (with label_smoothing) or mean squared error, a 0-d tensor
        averaged over the batch."""
        if self.regression:
            return F.mse_loss(output, label.view_as(output).to(output.dtype))
        return F.cross_entropy(output, label, label_smoothing=self.label_smoothing)

    @torch.no_grad()
    def test(self, obs: torch.Tensor, label: torch.Tensor) -> tuple:
        """(prediction, loss) of a test batch from one forward pass: the greedy prediction act() gives, and the
        training loss averaged over the batch (a 0-d float32 tensor)."""
        output = self._output(obs)
        return self._prediction(output), self.loss(output.float(), label)

    def learn(self, batch: Batch, counters: Counters) -> Metrics:
        with self.update.autocast():
            output = self(batch.obs)
            loss = self.loss(output, batch.label)
        self.update(loss, self.optim, self.scheduler)
        metrics = {'loss': loss.detach()}  # tensors: read only on the steps the logger writes (no sync per step)
        if not self.regression:  # deferred: computed only on the steps that write it (ML/run.py)
            output, label = output.detach(), batch.label
            metrics['accuracy'] = lambda: (output.argmax(-1) == label).float().mean()
        return metrics

    def _output(self, obs: torch.Tensor) -> torch.Tensor:
        """The model's output; with tta_flip the mean of the logits of each image and its mirror."""
        return self(obs) if not self.tta_flip else (self(obs) + self(obs.flip(-1))) / 2

    def _prediction(self, output: torch.Tensor) -> torch.Tensor:
        return output if self.regression else output.argmax(-1)
