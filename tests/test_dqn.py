"""DQN's parts, checked on tiny networks whose numbers can be worked out by hand: the dueling head, pixels as
uint8, prioritized replay's weights, the target network's refreshes and the double-Q target."""
import copy
import functools

import pytest
import torch
from torch import nn

from conftest import loggable
from ML.agents.dqn import DQN
from ML.errors import ConfigError
from ML.specs import Batch, Counters, Spec

ACTIONS = Spec((), torch.int64, discrete=True, low=0, high=2)  # three actions
SGD = functools.partial(torch.optim.SGD, lr=0.1)


def vector_agent(**kwargs):
    """Q over 4 features and 3 actions, with an MLP as the advantage stream when dueling."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    return DQN(nn.Identity(), model, SGD, ACTIONS, obs_spec=Spec((4,)), **kwargs)


def pixel_agent(**kwargs):
    """Q over 3x8x8 uint8 images: a conv as the eyes, (B, 4, 6, 6) features, and a linear head."""
    torch.manual_seed(0)
    eyes, model = nn.Conv2d(3, 4, 3), nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    return DQN(eyes, model, SGD, ACTIONS, obs_spec=Spec((3, 8, 8), torch.uint8), **kwargs)


def random_batch(obs_shape=(4,), size=8, weight=None, dtype=torch.float32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        obs, next_obs = (torch.randint(256, (size, *obs_shape), generator=generator, dtype=torch.uint8) for _ in 'ab')
    else:
        obs, next_obs = (torch.randn(size, *obs_shape, generator=generator) for _ in 'ab')
    return Batch(obs, torch.randint(3, (size,), generator=generator), torch.randn(size, generator=generator),
                 torch.full((size,), 0.99), next_obs, weight=weight)


@pytest.mark.parametrize('make, obs_shape', [(vector_agent, (4,)), (pixel_agent, (3, 8, 8))], ids=['vector', 'pixels'])
def test_dueling_q_is_value_plus_advantage_minus_its_mean(make, obs_shape):
    agent = make(dueling=True)
    obs = torch.randint(256, (5, *obs_shape), dtype=torch.uint8).float() / 255
    features = agent.q.eyes(obs)
    value, advantage = agent.q.value(features), agent.q.model(features)
    assert value.shape == (5, 1) and advantage.shape == (5, 3)
    torch.testing.assert_close(agent.q(obs), value + advantage - advantage.mean(dim=1, keepdim=True))
    assert agent.act(obs, Counters(), greedy=True).shape == (5,)
    assert all(p.requires_grad for p in agent.q.value.parameters()), 'the value stream is trained'
    assert any(p is v for p in agent.optim.param_groups[0]['params'] for v in agent.q.value.parameters())


def test_plain_dqn_reads_the_model_as_q():
    agent = vector_agent()
    obs = torch.randn(5, 4)
    assert agent.q.value is None and torch.equal(agent.q(obs), agent.q.model(obs))


def test_dueling_needs_the_observation_spec():
    with pytest.raises(ConfigError, match='agent.dueling=true sizes its value stream from obs_spec'):
        DQN(nn.Identity(), nn.Linear(4, 3), SGD, ACTIONS, dueling=True)


@pytest.mark.parametrize('dueling', [False, True])
def test_uint8_pixels_are_scaled_to_the_unit_interval(dueling):
    agent = pixel_agent(dueling=dueling)
    twin = copy.deepcopy(agent)
    pixels = random_batch((3, 8, 8), dtype=torch.uint8)
    scaled = pixels._replace(obs=pixels.obs.float() / 255, next_obs=pixels.next_obs.float() / 255)
    torch.testing.assert_close(agent.q(pixels.obs), agent.q(scaled.obs))
    assert torch.equal(agent.act(pixels.obs, Counters(), greedy=True), agent.act(scaled.obs, Counters(), greedy=True))
    counters = Counters(step=1)
    loss, twin_loss = (float(a.learn(batch, counters)['loss']) for a, batch in ((agent, pixels), (twin, scaled)))
    assert loss == pytest.approx(twin_loss, rel=1e-5)
    for a, b in zip(agent.q.parameters(), twin.q.parameters()):
        torch.testing.assert_close(a, b)


def test_prioritized_weights_scale_each_samples_loss_and_return_priorities():
    counters = Counters(step=1)
    uniform = random_batch()
    plain = vector_agent().learn(uniform, counters)
    assert 'priority' not in plain and loggable(plain)

    ones = vector_agent().learn(uniform._replace(weight=torch.ones(8)), counters)
    assert float(ones['loss']) == pytest.approx(float(plain['loss']))
    weight = torch.linspace(0.1, 1.0, 8)
    weighted = vector_agent().learn(uniform._replace(weight=weight), counters)
    assert float(weighted['loss']) != pytest.approx(float(plain['loss']))
    priority = weighted.pop('priority')
    assert priority.shape == (8,) and (priority >= 0).all() and not priority.requires_grad
    assert loggable(weighted)

    # the loss is the weighted mean of the per-sample Huber losses of those TD errors (taken before the step)
    huber = torch.where(priority < 1, 0.5 * priority ** 2, priority - 0.5)
    assert float(weighted['loss']) == pytest.approx(float((weight * huber).mean()), rel=1e-5)


@pytest.mark.parametrize('tau', [1.0, 0.5])
def test_the_target_moves_only_on_refresh_steps(tau):
    agent = vector_agent(target_update_per_steps=4, target_tau=tau)
    start = copy.deepcopy(agent.target_q.state_dict())
    for step in (1, 2, 3):
        agent.learn(random_batch(seed=step), Counters(step=step))
        assert all(torch.equal(start[k], v) for k, v in agent.target_q.state_dict().items()), f'moved at {step}'
    assert not all(torch.equal(a, b) for a, b in zip(agent.q.parameters(), agent.target_q.parameters()))
    agent.learn(random_batch(seed=4), Counters(step=4))
    for (key, target), online in zip(agent.target_q.state_dict().items(), agent.q.parameters()):
        torch.testing.assert_close(target, start[key] + tau * (online.detach() - start[key]))


@pytest.mark.parametrize('double', [True, False])
def test_the_target_matches_a_hand_computation(double):
    # Q(s) = [1 s, 2 s, 0] online and [3 s, -1 s, 0] in the target: for s' > 0 the online net picks action 1,
    # valued -s' by the target (double Q); the target's own pick is action 0, valued 3 s'
    agent = DQN(nn.Identity(), nn.Linear(1, 3, bias=False), functools.partial(torch.optim.SGD, lr=0.0), ACTIONS,
                double=double, target_update_per_steps=1000)
    with torch.no_grad():
        agent.q.model.weight.copy_(torch.tensor([[1.0], [2.0], [0.0]]))
        agent.target_q.model.weight.copy_(torch.tensor([[3.0], [-1.0], [0.0]]))
    obs, action = torch.tensor([[1.0], [2.0]]), torch.tensor([0, 1])  # Q(s, a) = 1 and 4
    reward, discount, next_obs = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.0]), torch.tensor([[2.0], [5.0]])
    batch = Batch(obs, action, reward, discount, next_obs, weight=torch.ones(2))
    metrics = agent.learn(batch, Counters(step=1))
    next_value = torch.tensor([-2.0, -5.0]) if double else torch.tensor([6.0, 15.0])
    target = reward + discount * next_value  # the second sample ended: its discount 0 leaves the reward alone
    torch.testing.assert_close(metrics['priority'], (target - torch.tensor([1.0, 4.0])).abs())


def test_exploration_picks_random_actions_and_greedy_never_does():
    agent = vector_agent(epsilon_start=1.0, epsilon_end=0.0, epsilon_frames=100)
    obs = torch.randn(300, 4)
    greedy = agent.act(obs, Counters(frame=0), greedy=True)
    assert torch.equal(agent.act(obs, Counters(frame=100)), greedy), 'epsilon 0 at frame 100'
    assert agent.act(obs, Counters(frame=0)).unique().numel() == 3


def test_continuous_actions_are_refused():
    with pytest.raises(ConfigError, match='Agent=DQN picks among discrete actions'):
        DQN(nn.Identity(), nn.Linear(4, 1), SGD, Spec((1,), low=-2.0, high=2.0), obs_spec=Spec((4,)))


class FrozenNorm(nn.BatchNorm1d):
    """A layer with its own train(): batch statistics always frozen, as fine-tuning code often does."""

    def train(self, mode=True):
        return super().train(False)


@pytest.mark.parametrize('norm', [nn.BatchNorm1d, FrozenNorm])
def test_acting_runs_in_eval_mode_and_learning_in_train_mode(norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), norm(16), nn.Dropout(0.5), nn.Linear(16, 3))
    agent = DQN(nn.Identity(), model, SGD, ACTIONS, obs_spec=Spec((4,)))
    obs = torch.randn(1, 4)  # one observation: batch norm in train mode would refuse it
    actions = {int(agent.act(obs, Counters(), greedy=True)) for _ in range(20)}
    assert len(actions) == 1 and not any(module.training for module in agent.q.modules()), 'dropout off'
    agent.learn(random_batch(), Counters(step=1))
    assert agent.q.model[2].training and model[1].training == (norm is nn.BatchNorm1d), "a module's train() is kept"
    assert not any(module.training for module in agent.target_q.modules())
    agent.act(obs, Counters(), greedy=True)
    assert not any(module.training for module in agent.q.modules())
