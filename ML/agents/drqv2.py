"""DrQ-v2 (Yarats et al. 2021, "Mastering Visual Continuous Control: Improved Data-Augmented Reinforcement
Learning", arXiv:2107.09645): DDPG from pixels with random-shift augmentation, clipped double Q, n-step returns
and a scheduled exploration noise. The networks and the update follow the authors' facebookresearch/drqv2
drqv2.py; the n-step returns are the replay's (replay.nstep), the update rate the loop's (learn_per_steps).

In the language: Eyes is the encoder (Encoder here, or any body: Eyes=CNN), Model the actor (Actor here, or any
head sized to the action, such as the default MLP; its output is squashed by tanh here). The critic has its own
trunk on the encoder's features and is built here, sized by the encoder's output; its feature_dim and hidden_dim
are this agent's arguments (agent.hidden_dim), the actor's are the Model's (model.hidden_dim).
"""
import copy
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from ML.agents.update import Update
from ML.blocks.augment import crop
from ML.errors import ConfigError


def orthogonal_init(module):
    """drqv2's utils.weight_init: orthogonal weights (ReLU gain for convolutions) and zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        gain = nn.init.calculate_gain('relu') if isinstance(module, nn.Conv2d) else 1.0
        nn.init.orthogonal_(module.weight, gain)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def random_shift(images, pad):
    """Each image shifted by up to pad pixels in x and y, edges repeated (DrQ's augmentation: Kostrikov et al.
    2020; drqv2's RandomShiftsAug draws the same integer shifts and samples them with grid_sample). A shift is a
    crop of the padded image (ML.blocks.augment.crop). (B, C, H, W) -> (B, C, H, W)."""
    dy, dx = torch.randint(0, 2 * pad + 1, (2, len(images)), device=images.device)  # each (B,)
    return crop(images, pad, dy, dx, padding_mode='replicate')


class Encoder(nn.Module):
    """drqv2's convolutional encoder: 4 convs of 32 channels, the first of stride 2, flattened.
    (B, C, 84, 84) -> (B, 32 * 35 * 35). It takes pixels already scaled to [-0.5, 0.5] (DrQV2 scales them, so
    that any Eyes sees the same input). A state vector (B, D) passes through as it is: the trunks read it directly,
    so env.pixels=false alone turns a pixel recipe into a state one."""

    def __init__(self, in_shape, channels=32):
        super().__init__()
        if len(in_shape) not in (1, 3):
            raise ValueError(f'Encoder needs in_shape (C, H, W) or (D,), got {tuple(in_shape)}')
        self.convnet = nn.Identity() if len(in_shape) == 1 else nn.Sequential(
            nn.Conv2d(in_shape[0], channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU())
        self.apply(orthogonal_init)
        # weights in channels_last, the layout oneDNN convolves fastest on CPU (one update on 512 stacks took 5.2 s
        # instead of 6.6 s, on one thread here); the output is the same
        self.to(memory_format=torch.channels_last)

    def forward(self, obs):
        return self.convnet(obs).flatten(1)  # (B, channels * H' * W')


def trunk(in_shape, feature_dim):
    """Features -> a small normalized code: Linear -> LayerNorm -> Tanh, drqv2's trunk for actor and critic."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), feature_dim), nn.LayerNorm(feature_dim),
                         nn.Tanh())


def mlp(in_dim, hidden_dim, out_dim):
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, out_dim))


class Actor(nn.Module):
    """drqv2's actor as a head: encoder features -> the action's mean before tanh, (B, *out_shape)."""

    def __init__(self, in_shape, out_shape, feature_dim=50, hidden_dim=1024):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.trunk = trunk(in_shape, feature_dim)
        self.policy = mlp(feature_dim, hidden_dim, math.prod(self.out_shape))
        self.apply(orthogonal_init)

    def forward(self, features):
        return self.policy(self.trunk(features)).view(len(features), *self.out_shape)


class Critic(nn.Module):
    """Twin Q networks on one trunk: (features, action) -> Q1, Q2, each (B,)."""

    def __init__(self, in_shape, action_dim, feature_dim=50, hidden_dim=1024):
        super().__init__()
        self.trunk = trunk(in_shape, feature_dim)
        self.Q1 = mlp(feature_dim + action_dim, hidden_dim, 1)
        self.Q2 = mlp(feature_dim + action_dim, hidden_dim, 1)
        self.apply(orthogonal_init)

    def forward(self, features, action):
        h = torch.cat([self.trunk(features), action], dim=-1)  # (B, feature_dim + action_dim)
        return self.Q1(h).squeeze(-1), self.Q2(h).squeeze(-1)


def linear_schedule(schedule):
    """'linear(start,end,frames)' or a number -> (start, end, frames), for std = start -> end over frames."""
    match = re.fullmatch(r'linear\((.*),(.*),(.*)\)', str(schedule).replace(' ', ''))
    parts = match.groups() if match else (schedule, schedule, 1)
    try:
        start, end, frames = (float(part) for part in parts)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"agent.stddev_schedule={schedule!r}: give a number or 'linear(start,end,frames)', "
                          f"e.g. 'linear(1.0,0.1,500000)'") from error
    return start, end, max(frames, 1.0)


class DrQV2(nn.Module):
    def __init__(self, eyes: nn.Module, model: nn.Module,
                 optim,                         # optim(parameters) -> torch.optim.Optimizer (drqv2: Adam, lr 1e-4)
                 obs_spec, action_spec,         # the critic is sized by obs_spec through eyes; actions in [-1, 1]
                 scheduler=None,                # scheduler(optimizer) -> an LR scheduler stepped once per update
                 feature_dim=50,                # the critic's trunk width (the actor's is model.feature_dim)
                 hidden_dim=1024,               # the critic's hidden width (the actor's is model.hidden_dim)
                 critic_target_tau=0.01,        # how far the target critic moves to the critic per update
                 num_expl_frames=4000,          # uniformly random actions before this frame (counters.frame)
                 stddev_schedule='linear(1.0,0.1,1000000)',  # exploration noise by frame; drqv2's medium tasks:
                                                # 500k agent steps of 2 simulator frames
                 stddev_clip=0.3,               # the noise of the updates' actions is clipped to +-this (TD3's)
                 aug_pad=4,                     # random shift of image observations by up to this many pixels
                 update: Update = None):        # the optimizer step (precision, clipping, accumulation);
                                                # None: plain fp32 steps
        super().__init__()
        if action_spec.discrete or (action_spec.low, action_spec.high) != (-1.0, 1.0):
            fix = 'use Agent=DQN' if action_spec.discrete else 'wrap it in gymnasium.wrappers.RescaleAction(env, -1, 1)'
            raise ConfigError(f'Agent=DrQV2 acts in continuous actions bounded by [-1, 1]; this env acts in '
                              f'{action_spec}: {fix}')
        self.eyes, self.actor = eyes, model
        self.pixels = obs_spec.dtype == torch.uint8  # frames: scaled to [-0.5, 0.5] here, augmented in learn
        self.action_shape = tuple(action_spec.shape)
        self.critic = Critic(self._features_shape(obs_spec), math.prod(self.action_shape), feature_dim, hidden_dim)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False).eval()
        # only the critic's loss trains the encoder: the actor learns on detached features (drqv2's update)
        self.critic_optim = optim([*eyes.parameters(), *self.critic.parameters()])
        self.actor_optim = optim(model.parameters())
        self.critic_scheduler = scheduler(self.critic_optim) if scheduler is not None else None
        self.actor_scheduler = scheduler(self.actor_optim) if scheduler is not None else None
        self.critic_target_tau, self.num_expl_frames = critic_target_tau, num_expl_frames
        self.schedule, self.stddev_clip, self.aug_pad = linear_schedule(stddev_schedule), stddev_clip, aug_pad
        self.update = update if update is not None else Update()

    def _features_shape(self, obs_spec):
        """The encoder's output for one observation, from a blank batch (of 2, which batch norm can take)."""
        device = next(self.eyes.parameters(), torch.empty(0)).device
        with torch.no_grad():
            return tuple(self.eyes(torch.zeros(2, *obs_spec.shape, device=device)).shape[1:])

    def train(self, mode=True):
        super().train(mode)
        self.critic_target.eval()  # the target is never trained
        return self

    def stddev(self, frame):
        """The exploration noise's standard deviation at this frame."""
        start, end, frames = self.schedule
        return start + (end - start) * min(frame / frames, 1.0)

    def _scale(self, obs):
        return obs.float() / 255.0 - 0.5 if self.pixels else obs  # drqv2's Encoder: obs / 255.0 - 0.5

    def _mean(self, features):
        return torch.tanh(self.actor(features))

    @staticmethod
    def _sample(mean, std, clip=None):
        """mean + N(0, std) noise, clipped to +-clip, the action clamped into (-1, 1) with the gradient passed
        straight through to the mean (drqv2's utils.TruncatedNormal.sample)."""
        noise = torch.randn_like(mean) * std
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        action = mean + noise
        return action - action.detach() + action.detach().clamp(-1 + 1e-6, 1 - 1e-6)

    @torch.no_grad()
    def act(self, obs, counters=None, greedy=False):
        """(B, *obs) -> (B, action_dim) actions in [-1, 1]: the mean, or the mean plus the scheduled noise
        (unclipped, as drqv2 acts), or uniformly random ones during the first num_expl_frames."""
        frame = counters.frame if counters is not None else 0  # without counters: as at the start of a run
        if not greedy and frame < self.num_expl_frames:
            return torch.rand(len(obs), *self.action_shape, device=obs.device) * 2 - 1
        mean = self._mean(self.eyes(self._scale(obs)))
        return mean if greedy else self._sample(mean, self.stddev(frame))

    def _augment(self, obs):
        obs = self._scale(obs)
        return random_shift(obs, self.aug_pad) if (self.pixels and self.aug_pad > 0) else obs

    def learn(self, batch, counters):
        """One critic and one actor update, then the target; batch.reward and batch.discount hold the n-step
        return and gamma ** n (0 past a termination)."""
        std = self.stddev(counters.frame)
        with self.update.autocast():
            features = self.eyes(self._augment(batch.obs))
            with torch.no_grad():
                next_features = self.eyes(self._augment(batch.next_obs))

            # critic: both Q regress to r + discount * min(Q1', Q2') at a noisy next action (clipped double Q,
            # Fujimoto et al. 2018)
            with torch.no_grad():
                next_action = self._sample(self._mean(next_features), std, self.stddev_clip)
                target = batch.reward + batch.discount * torch.min(*self.critic_target(next_features, next_action))
            q1, q2 = self.critic(features, batch.action)
            critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.update(critic_loss, self.critic_optim, self.critic_scheduler)

        # actor: up the critic's smaller Q at its own noisy action (deterministic policy gradient); its loss steps
        # the actor alone, the critic's gradients untouched
        with self.update.autocast():
            action = self._sample(self._mean(features.detach()), std, self.stddev_clip)
            actor_loss = -torch.min(*self.critic(features.detach(), action)).mean()
        self.update(actor_loss, self.actor_optim, self.actor_scheduler)

        # target: target <- tau * critic + (1 - tau) * target
        self.update.soft_update(self.critic_target, self.critic, self.critic_target_tau)

        return {'critic_loss': critic_loss.item(), 'actor_loss': actor_loss.item(), 'q': q1.mean().item(),
                'target_q': target.mean().item(), 'batch_reward': batch.reward.mean().item(), 'stddev': std}
