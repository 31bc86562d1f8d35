"""Deep Q-learning (Mnih et al. 2015, "Human-level control through deep reinforcement learning") with a Huber loss,
gradient clipping and a target network, as SB3, cleanrl and Dopamine run it by default; optional double Q
(van Hasselt et al. 2016, double=True), a dueling head (Wang et al. 2016) and prioritized replay's importance
weights (Schaul et al. 2016); its loss is written out in learn().

The engine builds `model` with one output per action. Plain DQN reads those outputs as Q-values. With
dueling=True they are the advantage stream A, and the agent adds a value stream V beside it on the eyes' features:
one hidden layer of 512 ReLUs, the width of Wang et al.'s streams on Atari. The eyes are the torso both streams
share, so on a vector observation with Eyes=null the two streams share nothing.

The exploration defaults are rl-baselines3-zoo's tuned CartPole-v1 DQN (hyperparams/dqn.yml: epsilon falls to 0.04
over the first 8k frames); Hyperparams/task/RL.yaml holds the rest of that recipe and its measured returns. Atari
wants its own recipe (Mnih et al. 2015: epsilon over 1M frames, a target refresh every 10k updates).
"""
import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ML.agents.update import Update
from ML.errors import ConfigError


class QNetwork(nn.Module):
    """(B, *obs) -> (B, num_actions): Q = model(eyes(obs)), or with a value stream Q = V + A - mean(A)."""

    def __init__(self, eyes: nn.Module, model: nn.Module, value: nn.Module = None):
        super().__init__()
        self.eyes, self.model, self.value = eyes, model, value

    def forward(self, obs):
        # pixels (Atari, DMC) come as uint8, which keeps the replay 4x smaller; the network sees them in [0, 1]
        obs = obs.float() / 255 if obs.dtype == torch.uint8 else obs
        features = obs if isinstance(self.eyes, nn.Identity) else self.eyes(obs)  # Eyes=null: skip the module call
        advantage = self.model(features)  # (B, num_actions)
        if self.value is None:
            return advantage
        # subtracting the mean advantage makes V and A identifiable (Wang et al. 2016, eq. 9)
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)


def value_stream(eyes: nn.Module, obs_shape, hidden=512) -> nn.Module:
    """Dueling's V: eyes' features -> (B, 1). Their shape comes from a dummy batch through eyes in eval mode."""
    was_training, device = eyes.training, next(eyes.parameters(), torch.empty(0)).device
    with torch.no_grad():
        features = eyes.eval()(torch.zeros(1, *obs_shape, device=device)).shape[1:]
    eyes.train(was_training)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(features), hidden), nn.ReLU(),
                         nn.Linear(hidden, 1)).to(device)


class DQN(nn.Module):
    def __init__(self, eyes: nn.Module, model: nn.Module,
                 optim,                        # optim(parameters) -> torch.optim.Optimizer, e.g. Adam with lr 1e-3
                 action_spec,                  # a discrete Spec: model outputs action_spec.n values
                 obs_spec=None,                # the observation's Spec; dueling needs it to size the value stream
                 scheduler=None,               # scheduler(optimizer) -> an LR scheduler stepped once per update
                 dueling=False,                # Q = V + A - mean(A), with model as A (Wang et al. 2016)
                 double=False,                 # Double DQN: pick the next action with the online net, value it
                                               # with the target (which alone picks and values it otherwise)
                 target_tau=1.0,               # how far the target moves to the online net per refresh; 1 = a copy
                 target_update_per_steps=256,  # loop steps (counters.step) between target refreshes; checked
                                               # when learn runs, so keep it a multiple of learn_per_steps
                 epsilon_start=1.0,            # exploration: chance of a random action at frame 0 ...
                 epsilon_end=0.04,             # ... falling linearly to this ...
                 epsilon_frames=8_000,         # ... by this frame (counters.frame), then held
                 update: Update = None):       # the optimizer step (precision, max_grad_norm, accumulation);
                                               # None: fp32, the gradient's norm clipped to 10 (cleanrl, SB3)
        super().__init__()
        if not action_spec.discrete:
            raise ConfigError(f'Agent=DQN picks among discrete actions; this env acts in {action_spec}: '
                              'Agent=DrQV2 learns continuous ones')
        if dueling and obs_spec is None:
            raise ConfigError('agent.dueling=true sizes its value stream from obs_spec; give DQN the obs_spec')
        self.num_actions = action_spec.n
        self.q = QNetwork(eyes, model, value_stream(eyes, obs_spec.shape) if dueling else None)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False).eval()
        self._modules_of_q = list(self.q.modules())
        self._flags_only = all(type(module).train is nn.Module.train for module in self._modules_of_q)
        self._rng = np.random.default_rng(int(torch.randint(2 ** 62, ())))  # seeded by the run's seed, through torch
        self.optim = optim(self.q.parameters())
        self.scheduler = scheduler(self.optim) if scheduler is not None else None
        self.double, self.target_tau, self.target_update_per_steps = double, target_tau, target_update_per_steps
        self.epsilon_start, self.epsilon_end, self.epsilon_frames = epsilon_start, epsilon_end, epsilon_frames
        self.update = update if update is not None else Update(max_grad_norm=10.0)

    def train(self, mode=True):
        super().train(mode)
        self.target_q.eval()  # the target is never trained: its dropout stays off, its batch norm frozen
        return self

    def _mode(self, training):
        """Q-network in train or eval mode. The two switch every few steps; nn.Module.train walks the module tree
        each time, to set a flag on every module, so the flags are set directly unless a module overrides train()."""
        if self.q.training == training:
            return
        if self._flags_only:
            for module in self._modules_of_q:  # the plain attribute, past nn.Module.__setattr__'s bookkeeping
                module.__dict__['training'] = training
        else:
            self.q.train(training)

    def epsilon(self, frame):
        """The chance of a random action at this frame."""
        progress = min(frame / self.epsilon_frames, 1.0) if self.epsilon_frames > 0 else 1.0
        return (1 - progress) * self.epsilon_start + progress * self.epsilon_end

    def act(self, obs, counters=None, greedy=False):
        """(B, *obs) -> (B,) int64 actions: the argmax of Q (greedy), or with chance epsilon (at counters.frame; the
        start's without counters) a uniformly random action."""
        n = obs.shape[0]
        # exploration draws in numpy: a handful of torch calls for one random number would cost more than the env
        frame = counters.frame if counters is not None else 0
        explore = np.zeros(n, bool) if greedy else self._rng.random(n) < self.epsilon(frame)
        if explore.all():  # while epsilon is high, most steps need no forward pass
            return torch.from_numpy(self._random_actions(n)).to(obs.device)
        self._mode(training=False)  # act in eval mode (dropout off, batch norm frozen); learn() switches back
        with torch.inference_mode():
            action = self.q(obs).argmax(dim=1)
        if explore.any():
            random = torch.from_numpy(np.where(explore, self._random_actions(n), -1))
            action = torch.where(random >= 0, random.to(action.device), action)
        return action

    def _random_actions(self, n):
        return (self._rng.random(n) * self.num_actions).astype(np.int64)  # uniform over 0..num_actions - 1

    def learn(self, batch, counters):
        """One gradient step on the TD error; the batch's reward and discount already hold the n-step return."""
        self._mode(training=True)

        with self.update.autocast():
            # target: r + discount * Q_target(s', a'), with a' = argmax Q(s') under double Q, else argmax Q_target(s')
            with torch.no_grad():
                next_q = self.target_q(batch.next_obs)
                if self.double:
                    next_action = self.q(batch.next_obs).argmax(dim=1, keepdim=True)
                    next_value = next_q.gather(1, next_action).squeeze(1)
                else:
                    next_value = next_q.max(dim=1).values
                target = batch.reward + batch.discount * next_value

            # the Huber loss keeps the gradient of large TD errors bounded (Mnih et al. 2015, "Methods")
            q = self.q(batch.obs).gather(1, batch.action.long().view(-1, 1)).squeeze(1)
            if batch.weight is None:
                loss = F.smooth_l1_loss(q, target)
            else:
                # prioritized replay's importance weights undo its sampling bias (Schaul et al. 2016, 3.4)
                loss = (F.smooth_l1_loss(q, target, reduction='none') * batch.weight).mean()
        grad_norm = self.update(loss, self.optim, self.scheduler)

        # refresh the target: target <- tau * online + (1 - tau) * target
        if counters.step % self.target_update_per_steps == 0:
            self.update.soft_update(self.target_q, self.q, self.target_tau)

        # tensors, not numbers: the logger reads them when it writes a row (.item() here would sync a GPU every update)
        metrics = {'loss': loss.detach(), 'q': q.detach().mean()}
        if grad_norm is not None:  # measured on the optimizer steps that clip (max_grad_norm)
            metrics['grad_norm'] = grad_norm
        metrics['epsilon'] = self.epsilon(counters.frame)
        if batch.weight is not None:
            metrics['priority'] = (target - q).abs().detach()  # (B,) |TD error|: the replay's new priorities
        return metrics
