"""The optimizer step every agent takes (ML/agents/update.py): mixed precision, its loss scaler in checkpoints,
gradient accumulation, clipping, soft updates; and the networks' compilation and layout (ML/agents/compiling.py)."""
import copy
import csv
import functools
import re

import pytest
import torch
from torch import nn

from ML.agents.classifier import Classifier
from ML.agents.compiling import choose_layout, prepare
from ML.agents.update import Update, describe
from ML.cli import main
from ML.errors import ConfigError
from ML.records import checkpoints
from ML.specs import Batch, Counters, Spec
from conftest import FAST, checkpoint, ml, run_dir

CLASSES = Spec((), torch.int64, discrete=True, low=0, high=2)

USER_AGENTS = '''

class MyAgent(nn.Module):
    """A user's classifier: its loss written out, the step through the update the engine hands it."""

    def __init__(self, eyes, model, optim, update):
        super().__init__()
        self.net = nn.Sequential(eyes, model)
        self.optim, self.update = optim(self.net.parameters()), update

    def act(self, obs, counters, greedy=False):
        with torch.no_grad():
            return self.net(obs).argmax(-1)

    def learn(self, batch, counters):
        with self.update.autocast():
            loss = nn.functional.cross_entropy(self.net(batch.obs), batch.label)
        self.update(loss, self.optim)
        return {'loss': loss.detach()}


class SelfStepping(MyAgent):
    """A user's agent that steps its own optimizer: no update to apply a precision."""

    def __init__(self, eyes, model, optim):
        super().__init__(eyes, model, optim, update=None)
'''


def accuracy(folder) -> float:
    with open(folder / 'eval.csv') as file:
        return float(list(csv.DictReader(file))[-1]['accuracy'])


def classifier(update=None, optim=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9), scheduler=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    return Classifier(nn.Identity(), model, optim, CLASSES, scheduler=scheduler, update=update)


def batch(size=8, seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(size, 4, generator=generator) * scale
    return Batch(obs, label=torch.randint(3, (size,), generator=generator))


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_mixed_precision_on_cpu_reaches_the_default_tasks_accuracy(precision, user_dir):
    ml(f'precision={precision}', 'progress=false', 'save=false', cwd=user_dir)
    assert accuracy(run_dir(user_dir)) >= 0.95  # fp32 ends at 0.97 on the 8x8 digits' test split


def test_each_precision_says_what_it_does_on_a_cpu():
    assert describe() == 'precision: fp32 on cpu'
    assert describe('bf16') == 'precision: bf16 autocast on cpu'
    assert describe('fp16').startswith('precision: fp16 autocast with a loss scaler on cpu (slow on CPUs without')
    assert describe(accelerate=True) == 'precision: bf16 autocast on cpu (accelerate=true: cpu takes bf16)'
    assert describe('fp16', accelerate=True, compile=True, channels_last=True).endswith(
        'on cpu (slow on CPUs without fp16 arithmetic; bf16 is the CPU\'s mixed precision); compile: on '
        '(torch.compile); channels_last: on')


def test_the_forward_pass_runs_in_the_precision_asked():
    agent = classifier(Update('bf16'))
    with agent.update.autocast():
        assert agent(batch().obs).dtype == torch.bfloat16
    with Update('fp32').autocast():
        assert agent(batch().obs).dtype == torch.float32


@pytest.mark.parametrize('line, message', [
    pytest.param(['precision=fp8'], 'ConfigError: precision=fp8: not a precision; give fp32, bf16 or fp16',
                 id='precision'),
    pytest.param(['max_grad_norm=0'], 'ConfigError: max_grad_norm=0: expected a number > 0 or null (the default is '
                 'null)', id='max-grad-norm'),
    pytest.param(['accumulate_grad_batches=0'], 'ConfigError: accumulate_grad_batches=0: expected an integer >= 1 '
                 '(the default is 1)', id='accumulate'),
    pytest.param(['Agent=Run.SelfStepping', 'precision=bf16'], 'ConfigError: precision=bf16: Agent=Run.SelfStepping '
                 'keeps no update, so nothing would apply it; take `update` in its constructor and call '
                 'self.update(loss, optimizer) in learn()', id='agent-without-update'),
    pytest.param(['channels_last=true'], "ConfigError: channels_last=true: Classifier's networks hold no convolution "
                 "(no 4-d weight) to lay out; leave channels_last at null", id='channels-last-without-convolutions'),
])
def test_bad_acceleration_keys_are_one_clear_line(line, message, user_dir, capsys):
    with open(user_dir / 'Run.py', 'a') as file:
        file.write(USER_AGENTS)
    with pytest.raises(SystemExit) as exit:
        main([*FAST, *line])
    assert exit.value.code == 1
    assert capsys.readouterr().err.strip() == f'ML: {message}'
    assert not (user_dir / 'Benchmarking').exists()


def test_a_users_agent_trains_through_the_update(user_dir):
    with open(user_dir / 'Run.py', 'a') as file:
        file.write(USER_AGENTS)
    ml('Agent=Run.MyAgent', 'precision=bf16', 'accumulate_grad_batches=2', 'max_grad_norm=1', 'train_steps=600',
       'progress=false', 'save=false', cwd=user_dir)
    assert accuracy(run_dir(user_dir, agent='MyAgent')) >= 0.93  # 96.9% here: 300 optimizer steps of 512 digits


def test_two_half_batches_accumulated_step_as_the_whole_batch():
    scheduler = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    whole, halves = classifier(Update(), scheduler=scheduler), classifier(Update(accumulate_grad_batches=2),
                                                                            scheduler=scheduler)
    for step in range(3):
        full = batch(size=16, seed=step)
        whole.learn(full, Counters())
        before = copy.deepcopy(halves.state_dict())
        halves.learn(Batch(full.obs[:8], label=full.label[:8]), Counters())
        assert all(torch.equal(before[key], value) for key, value in halves.state_dict().items()), 'no step yet'
        halves.learn(Batch(full.obs[8:], label=full.label[8:]), Counters())
        for key, value in whole.state_dict().items():
            torch.testing.assert_close(halves.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert halves.scheduler.get_last_lr() == whole.scheduler.get_last_lr() == [0.1 * 0.5 ** 3], 'a step per pair'


def gradient_norm(agent, data) -> float:
    """The global L2 norm of the gradient of the agent's loss on data, taken by hand."""
    loss = nn.functional.cross_entropy(agent(data.obs), data.label)
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in torch.autograd.grad(
        loss, list(agent.parameters()))])))


@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_clipping_bounds_the_gradient_norm(precision):
    agent = classifier(Update(precision, max_grad_norm=0.5), optim=functools.partial(torch.optim.SGD, lr=1.0))
    data = batch(scale=5.0)
    assert gradient_norm(classifier(), data) > 2, 'a gradient worth clipping'
    before = [p.detach().clone() for p in agent.parameters()]
    for _ in range(10):  # fp16: steps whose scaled gradients overflow are skipped while the loss scale halves
        agent.learn(data, Counters())
        moved = float(torch.linalg.vector_norm(torch.stack([(p.detach() - b).norm()
                                                            for p, b in zip(agent.parameters(), before)])))
        if moved:
            break
    # with SGD at lr 1 a step moves the parameters by minus the clipped gradient: its norm is max_grad_norm
    assert moved == pytest.approx(0.5, rel=1e-3)


def test_the_step_returns_the_norm_before_clipping():
    agent, data = classifier(Update(max_grad_norm=0.5)), batch(scale=5.0)
    norm = gradient_norm(classifier(), data)
    loss = nn.functional.cross_entropy(agent(data.obs), data.label)
    assert float(agent.update(loss, agent.optim)) == pytest.approx(norm, rel=1e-5)
    assert Update()(agent(data.obs).sum(), agent.optim) is None, 'nothing measured without clipping'


def test_in_fp32_the_update_is_the_plain_step_bit_for_bit():
    adam = functools.partial(torch.optim.Adam, lr=1e-2)
    agent, hand = classifier(Update(max_grad_norm=0.5), optim=adam), classifier(optim=adam)
    for seed in range(3):
        data = batch(seed=seed, scale=5.0)
        agent.learn(data, Counters())
        loss = nn.functional.cross_entropy(hand(data.obs), data.label)
        hand.optim.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(list(hand.parameters()), 0.5)
        hand.optim.step()
    assert all(torch.equal(a, b) for a, b in zip(agent.parameters(), hand.parameters()))


@pytest.mark.parametrize('tau', [0.0, 0.005, 0.5, 1.0])
def test_the_soft_update_is_polyak_averaging(tau):
    torch.manual_seed(0)
    online, target = (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(2))
    online(torch.randn(8, 3))  # batch norm's running statistics move away from the target's
    start = copy.deepcopy(target.state_dict())
    Update.soft_update(target, online, tau)
    for (name, value), (_, original) in zip(target.named_parameters(), online.named_parameters()):
        torch.testing.assert_close(value, tau * original + (1 - tau) * start[name])
    for (name, value), (_, original) in zip(target.named_buffers(), online.named_buffers()):
        assert torch.equal(value, original), f'{name} is copied'


def fp16_agent():
    """A classifier in fp16 that has taken steps: its loss scale fell once (an overflow), then grew its count."""
    agent = classifier(Update('fp16', accumulate_grad_batches=2))
    agent.learn(batch(scale=1e4), Counters())  # an fp16 overflow: the step is skipped, the scale halves
    agent.learn(batch(scale=1e4), Counters())
    for seed in range(5):
        agent.learn(batch(seed=seed), Counters())
    return agent


def test_the_loss_scale_and_the_accumulation_count_are_state():
    agent = fp16_agent()
    state = agent.update.state_dict()
    assert state['scaler']['scale'] < 65536.0 and state['micro_batches'] == [1]
    fresh = classifier(Update('fp16', accumulate_grad_batches=2))
    assert fresh.update.state_dict()['scaler'] != state['scaler']
    fresh.update.load_state_dict(state)
    assert fresh.update.state_dict() == state
    before = copy.deepcopy(fresh.state_dict())
    fresh.learn(batch(), Counters())  # the second micro-batch of the cycle the checkpoint was in: a step
    assert not all(torch.equal(before[key], value) for key, value in fresh.state_dict().items())
    assert fresh.update.state_dict()['micro_batches'] == [0]


def test_the_loss_scale_survives_a_checkpoint(tmp_path):
    agent = fp16_agent()
    path = tmp_path / 'agent.pt'
    checkpoints.save(path, agent, {'precision': 'fp16'}, Counters(step=7))
    resumed = classifier(Update('fp16', accumulate_grad_batches=2))
    checkpoints.restore(resumed, checkpoints.read(path), path)
    assert resumed.update.state_dict() == agent.update.state_dict()
    assert resumed.update.scaler.get_scale() == agent.update.scaler.get_scale() < 65536.0


def test_channels_last_lays_out_convolutions_and_the_optimizer_still_steps_them():
    torch.manual_seed(0)
    eyes = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten())
    agent = Classifier(eyes, nn.Linear(4 * 6 * 6, 3), functools.partial(torch.optim.SGD, lr=0.1), CLASSES)
    prepare(agent, channels_last=True)
    weight = agent.eyes[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    before = weight.detach().clone()
    agent.learn(Batch(torch.randn(8, 3, 8, 8), label=torch.randint(3, (8,))), Counters())
    assert not torch.equal(weight, before), 'the optimizer holds the parameters in their new layout'


VIEWING_MODEL = '''

class Viewing(nn.Module):
    """A CNN on the 8x8 digits that, in training, flattens with .view() as older tutorials do: a channels_last
    convolution's output cannot be viewed so."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x.view(len(x), 1, 8, 8)))
        return self.head(h.view(len(h), -1) if self.training else h.flatten(1))
'''


def test_on_a_cpu_convolutions_run_in_channels_last_unless_asked_not_to(user_dir):
    said = ml(*FAST, 'Eyes=CNN', cwd=user_dir).stdout.splitlines()
    assert 'ML: precision: fp32 on cpu; channels_last: on' in said
    weights = [value for value in torch.load(checkpoint(user_dir))['agent'].values() if value.dim() == 4]
    assert all(weight.is_contiguous(memory_format=torch.channels_last) for weight in weights), 'the layout they ran in'
    assert any(not weight.is_contiguous() for weight in weights), 'not merely a 1-channel weight, which is both'
    assert not any('channels_last' in line for line in ml(*FAST, 'Eyes=CNN', 'channels_last=false',
                                                             cwd=user_dir).stdout.splitlines())
    assert not any('precision' in line for line in ml(*FAST, cwd=user_dir).stdout.splitlines()), \
        'the default MLP convolves nothing: nothing to say'


def test_a_model_that_fails_in_channels_last_trains_in_its_own_layout_with_one_line(user_dir):
    with open(user_dir / 'Run.py', 'a') as file:
        file.write(VIEWING_MODEL)
    result = ml(*FAST, 'Model=Run.Viewing', cwd=user_dir)
    said = [line for line in result.stdout.splitlines() if 'channels_last' in line]
    where = r'Model \(Viewing\) fails in that layout: \./Run\.py, line \d+: RuntimeError: view size is not compatible'
    assert len(said) == 1 and re.match(rf'ML: channels_last: off, as {where}', said[0])
    assert checkpoint(user_dir).exists(), 'trained and saved'

    asked = ml(*FAST, 'Model=Run.Viewing', 'channels_last=true', 'experiment=asked', cwd=user_dir, check=False)
    assert asked.returncode == 1 and asked.stderr.strip().splitlines() == [asked.stderr.strip()]
    assert re.match(rf'ML: ConfigError: channels_last=true: {where}', asked.stderr)
    assert not (user_dir / 'Benchmarking' / 'asked').exists()


class Viewed(nn.Module):
    def forward(self, x):
        return x.view(len(x), -1)  # (B, C, H, W) -> (B, C * H * W), for contiguous inputs only


def test_trying_the_layout_leaves_each_network_as_it_was():
    torch.manual_seed(0)
    laid_out = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))  # laid out by itself, as DrQ's
    laid_out.to(memory_format=torch.channels_last)                                    # encoder is
    viewing = nn.Sequential(nn.Conv2d(4, 2, 3), Viewed())
    networks, before = {'Eyes': laid_out, 'Model': viewing.train()}, copy.deepcopy(laid_out.state_dict())
    pointers, random_state = [weight.data_ptr() for weight in (laid_out[0].weight, viewing[0].weight)], \
        torch.get_rng_state()
    layout = choose_layout(None, nn.ModuleDict(networks), networks, (3, 8, 8), 'cpu')
    assert not layout.channels_last and layout.note.startswith('channels_last: off, as Model (Sequential) fails')
    assert laid_out[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert viewing[0].weight.is_contiguous() and viewing.training
    assert [weight.data_ptr() for weight in (laid_out[0].weight, viewing[0].weight)] == pointers
    for key, value in laid_out.state_dict().items():  # batch norm's running statistics and count among them
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.get_rng_state(), random_state), 'the trial drew nothing from the run\'s random state'


def test_the_layout_is_chosen_where_a_cpu_convolves_and_blamed_only_for_its_own_failures():
    convolving = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    assert choose_layout(None, convolving, {'Model': convolving}, (3, 8, 8), 'cpu') == (True, None)
    assert choose_layout(None, convolving, {'Model': convolving}, (3, 8, 8), 'cuda') == (False, None), 'when asked'
    assert choose_layout(False, convolving, {'Model': convolving}, (3, 8, 8), 'cpu') == (False, None)
    linear = nn.Linear(3, 2)
    assert choose_layout(None, linear, {'Model': linear}, (3,), 'cpu') == (False, None), 'nothing convolves'
    with pytest.raises(ConfigError, match=r"^channels_last=true: Linear's networks hold no convolution"):
        choose_layout(True, linear, {'Model': linear}, (3,), 'cpu')
    broken = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(5, 2))  # fails in any layout: its own error
    assert choose_layout(None, broken, {'Model': broken}, (3, 8, 8), 'cpu') == (False, None)


def test_compiling_keeps_the_state_dict_and_a_failure_falls_back_with_one_line(capsys):
    graphs = []

    def recording(graph_module, example_inputs):  # a torch.compile backend that runs the graph it was given
        graphs.append(graph_module)
        return graph_module.forward

    agent, eager = classifier(), classifier()
    keys = list(agent.state_dict())
    prepare(agent, compile=True, backend=recording)
    agent.learn(batch(), Counters())
    eager.learn(batch(), Counters())
    assert graphs and list(agent.state_dict()) == keys, 'compiled, with the same checkpoint keys'
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(agent.state_dict()[key], value)

    def failing(graph_module, example_inputs):
        raise RuntimeError('no C++ compiler found')

    prepare(agent, compile=True, backend=failing)
    agent.learn(batch(), Counters())
    eager.learn(batch(), Counters())
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ['ML: compile: model (Sequential) runs eagerly: it did not compile (RuntimeError: no C++ '
                     'compiler found)']
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(agent.state_dict()[key], value)
    agent.learn(batch(), Counters())
    assert not capsys.readouterr().err, 'said once'
