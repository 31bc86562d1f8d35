"""The language: overrides made ready for Hydra, name resolution, argument routing and shape inference."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ML.errors import ConfigError, PathError, ShapeError
from ML.language import build, compose, paths, schema
from ML.language.build import infer_shapes


@pytest.mark.parametrize('given, ready', [
    pytest.param('Model=nn.Flatten()', "Model='nn.Flatten()'", id='code-value'),
    pytest.param('Model=[CNN,nn.Flatten(),nn.Linear]', "Model=[CNN,'nn.Flatten()',nn.Linear]", id='code-in-list'),
    pytest.param('Model=nn.Flatten(),nn.Identity()', "Model='nn.Flatten()','nn.Identity()'", id='code-sweep'),
    pytest.param('Model=choice(nn.Flatten(),CNN)', "Model=choice('nn.Flatten()',CNN)", id='code-in-hydra-function'),
    pytest.param('lr=range(1,3)', 'lr=range(1,3)', id='hydra-function-untouched'),
    pytest.param('+eyes.1.depth=5', '++eyes.1.depth=5', id='plus-becomes-plusplus'),
    pytest.param('eyes.depth=5', '++eyes.depth=5', id='twin-needs-no-plus'),
    pytest.param('lr=0.1', 'lr=0.1', id='plain'),
    pytest.param('Model=Run.model', 'Model=Run.model', id='dotted-path'),
    pytest.param('~lr', '~lr', id='delete'),
])
def test_overrides_are_made_ready_for_hydras_parser(given, ready):
    assert compose.normalize(given, {'eyes', 'model'}) == ready


def test_hydra_parses_every_prepared_code_value():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parsed = OverridesParser.create().parse_overrides(
        [compose.normalize('Model=[CNN,nn.Flatten(),nn.Linear(4,2)]', set())])
    assert parsed[0].value() == ['CNN', 'nn.Flatten()', 'nn.Linear(4,2)']


def test_code_keywords_become_overrides_and_live_objects():
    net = nn.Linear(2, 2)
    overrides, live = compose.from_code({'lr': 0.5, 'Dataset': 'MNIST', 'save': False, 'load': None,
                                         'Model': net, 'eyes': {'depth': 3}, 'Eyes': ['CNN', nn.ReLU]})
    assert overrides[:5] == ['lr=0.5', "Dataset='MNIST'", 'save=false', 'load=null', "Model='live:Model'"]
    assert 'eyes.depth=3' in overrides and "Eyes=['CNN','live:Eyes.1']" in overrides
    assert live == {'live:Model': net, 'live:Eyes.1': nn.ReLU}


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_a_string_from_code_reaches_hydra_as_it_was_given(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    override = compose.normalize(compose.from_code({'experiment': text})[0][0], set())
    assert OverridesParser.create().parse_overrides([override])[0].value() == text


@pytest.mark.parametrize('key, value', [('experiment', '2024'), ('experiment', 'a,b'), ('experiment', '1e-3'),
                                        ('load', 'true'), ('load', 'null'), ('load', "it's"), ('load', 'nn.Flatten()')])
def test_a_string_from_code_is_composed_as_that_string(key, value, user_dir):
    assert compose.compose(compose.from_code({key: value})[0], user_dir)[key] == value


def test_a_recipe_and_an_environment_from_code_are_found_quoted(user_dir):
    assert compose.compose(compose.from_code({'task': 'atari/pong'})[0], user_dir)['env'] == {'game': 'pong'}
    assert compose.compose(compose.from_code({'Env': 'CartPole-v1'})[0], user_dir)['Agent'] == 'DQN'


def test_numbers_from_code_stay_numbers(user_dir):
    import numpy as np
    overrides, live = compose.from_code({'lr': np.float32(0.25), 'batch_size': np.int64(7)})
    config = compose.compose(overrides, user_dir)
    assert (config['lr'], config['batch_size'], live) == (0.25, 7, {})


def test_the_command_line_wins_over_code():
    assert compose.merge(['lr=0.5', 'seed=3'], ['lr=0.1']) == ['seed=3', 'lr=0.1']


def test_priority_command_line_over_code_over_recipe_over_defaults(user_dir):
    config = compose.compose(compose.merge(['task=recipe', 'lr=0.5', 'batch_size=7'], ['batch_size=8']), user_dir)
    assert config['Eyes'] == 'CNN'          # recipe over defaults
    assert config['lr'] == 0.5              # code over recipe
    assert config['batch_size'] == 8        # command line over code
    assert config['optim']['lr'] == 0.5     # optim.lr follows lr
    assert config['train_steps'] == 1000    # defaults


def test_a_users_recipe_wins_over_the_builtin_one_of_the_same_name(user_dir):
    (user_dir / 'classify.yaml').write_text('imports: [self]\nlr: 0.25\nDataset: Digits\nAgent: Classifier\n')
    assert compose.compose([], user_dir)['lr'] == 0.25
    (user_dir / 'classify.yaml').unlink()
    assert compose.compose([], user_dir)['lr'] == 1e-3


def test_hydra_defaults_with_self_work_in_a_users_recipe(user_dir):
    (user_dir / 'hydra_style.yaml').write_text('defaults:\n  - /task/classify\n  - _self_\nbatch_size: 9\n')
    config = compose.compose(['task=hydra_style'], user_dir)
    assert (config['batch_size'], config['Dataset']) == (9, 'Digits')


def test_indexed_twin_arguments_reach_the_list(user_dir):
    config = compose.compose(['Eyes=[CNN,Transformer]', '+eyes.1.depth=5', 'eyes.channels=4'], user_dir)
    assert config['Eyes'] == ['CNN', 'Transformer']
    assert config['eyes'] == {'1': {'depth': 5}, 'channels': 4}


@pytest.mark.parametrize('name, expected', [
    ('nn.Linear', nn.Linear), ('torch.nn.GRU', nn.GRU), ('F.relu', torch.nn.functional.relu),
    ('torch.optim.SGD', torch.optim.SGD)])
def test_importable_and_scoped_paths_resolve(name, expected, user_dir):
    assert paths.resolve(name, 'Model', user_dir) is expected


def test_paths_into_the_users_directory_resolve(user_dir):
    assert type(paths.resolve('Run.model', 'Model', user_dir)).__name__ == 'Model'
    assert paths.resolve('Run.Model', 'Model', user_dir).__name__ == 'Model'
    assert paths.resolve('./Run.py.Model', 'Model', user_dir).__name__ == 'Model'
    assert paths.resolve('pkg.Nets.Tiny', 'Model', user_dir).__name__ == 'Tiny'
    assert isinstance(paths.resolve('nn.Flatten()', 'Model', user_dir), nn.Flatten)
    assert isinstance(paths.resolve('Run.Model((4,), (2,))', 'Model', user_dir), nn.Module)


def test_a_module_whose_name_starts_with_py_is_a_dotted_path_not_a_file(user_dir):
    (user_dir / 'models').mkdir()  # a folder of files without __init__.py
    (user_dir / 'models' / 'pyramid.py').write_text('from torch import nn\n\nNet = nn.Identity\n')
    assert paths.resolve('models.pyramid.Net', 'Model', user_dir) is nn.Identity
    assert paths.resolve('models/pyramid.py.Net', 'Model', user_dir) is nn.Identity


def test_an_unresolvable_path_names_each_place_tried_and_the_closest_names(user_dir):
    with pytest.raises(PathError, match=r"Model=Run\.modle: not found; tried \./Run\.py has no 'modle' "
                                        r"\(did you mean 'model'\?\)"):
        paths.resolve('Run.modle', 'Model', user_dir)
    with pytest.raises(PathError, match=r"torch\.nn has no 'Gru' \(did you mean 'GRU'"):
        paths.resolve('torch.nn.Gru', 'Model', user_dir)
    with pytest.raises(PathError, match=r"tried \./Nope\.py \(no such file\); importable modules \(no module 'Nope'\)"):
        paths.resolve('Nope.Model', 'Model', user_dir)


def test_a_code_value_that_does_not_parse_says_where(user_dir):
    with pytest.raises(ConfigError, match=r"Model=nn\.Flatten\(: code value does not parse"):
        paths.resolve('nn.Flatten(', 'Model', user_dir)


def test_shape_inference_fills_the_eight_names():
    names = ('in_shape', 'out_shape', 'in_features', 'out_features', 'in_channels', 'out_channels', 'in_dim', 'out_dim')
    assert infer_shapes(names, in_shape=(3, 8, 8), out_shape=(10,)) == dict(
        in_shape=(3, 8, 8), out_shape=(10,), in_features=192, out_features=10, in_channels=3, out_channels=10,
        in_dim=192, out_dim=10)
    assert infer_shapes(('in_features', 'hidden'), in_shape=(64,)) == {'in_features': 64}
    assert infer_shapes(('in_features', 'in_dim'), in_shape=(5, 16)) == {'in_features': 16, 'in_dim': 16}


def test_a_sequential_infers_each_elements_input_from_the_previous_output(user_dir):
    model = build.build('Model', ['CNN', 'nn.Flatten()', 'nn.Linear'], {'0': {'depth': 1}}, cwd=user_dir,
                        in_shape=(1, 8, 8), out_shape=(10,))
    assert isinstance(model, nn.Sequential) and model[2].out_features == 10
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_a_value_the_user_gives_wins_over_inference(user_dir):
    model = build.build('Model', 'nn.Linear', {'out_features': 3}, cwd=user_dir, in_shape=(5,), out_shape=(10,))
    assert (model.in_features, model.out_features) == (5, 3)


def test_unindexed_arguments_go_to_every_element_that_takes_them(user_dir):
    eyes = build.build('Eyes', ['CNN', 'CNN'], {'channels': 4}, cwd=user_dir, in_shape=(1, 8, 8))
    assert all(block(torch.zeros(1, 1, 8, 8) if i == 0 else torch.zeros(1, 4, 8, 8)).shape[1] == 4
               for i, block in enumerate(eyes))


def test_an_argument_no_element_takes_is_an_error(user_dir):
    with pytest.raises(ConfigError, match=r"eyes\.dept: CNN takes no argument 'dept' \(did you mean 'depth'\?\)"):
        build.build('Eyes', 'CNN', {'dept': 2}, cwd=user_dir, in_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match=r"eyes\.nope: no element of Eyes=\['CNN', 'CNN'\] takes 'nope'"):
        build.build('Eyes', ['CNN', 'CNN'], {'nope': 2}, cwd=user_dir, in_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match=r'eyes\.2: Eyes has 2 elements'):
        build.build('Eyes', ['CNN', 'CNN'], {'2': {'depth': 1}}, cwd=user_dir, in_shape=(1, 8, 8))


def test_an_argument_left_unfilled_names_its_key(user_dir):
    with pytest.raises(ConfigError, match=r"Eyes=nn\.GRU: .*missing 2 required positional arguments: "
                                          r"'input_size' and 'hidden_size'; give them as eyes\.<name>="):
        build.build('Eyes', 'nn.GRU', {}, cwd=user_dir, in_shape=(5, 4))


def test_a_shape_mismatch_names_the_block_and_the_shapes(user_dir):
    with pytest.raises(ShapeError, match=r'Model\.1 \(Linear\): expected an input it can take, got shape \(1, 8, 8\)'):
        build.build('Model', ['nn.Identity()', 'nn.Linear(3,2)', 'nn.ReLU()'], {}, cwd=user_dir, in_shape=(1, 8, 8))


def test_an_instance_is_used_as_it_is_and_takes_no_arguments(user_dir):
    net = nn.Linear(64, 10)
    assert build.build('Model', net, {}, cwd=user_dir, in_shape=(64,), out_shape=(10,)) is net
    with pytest.raises(ConfigError, match=r'model\.hidden: Model is an instance \(Linear\)'):
        build.build('Model', net, {'hidden': 3}, cwd=user_dir, in_shape=(64,))


def test_optimizers_are_built_as_callables_of_the_parameters(user_dir):
    optim = build.build('Optim', 'torch.optim.SGD', {'lr': 0.3, 'momentum': 0.9}, cwd=user_dir, partial=True)
    optimizer = optim(nn.Linear(2, 2).parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults['lr'] == 0.3


def test_composing_leaves_the_defaults_untouched(user_dir):
    before = compose.defaults()
    compose.compose(['lr=0.3', 'Eyes=CNN', 'eyes.depth=2'], user_dir)
    assert compose.defaults() == before


def test_a_required_argument_left_unfilled_names_its_key(user_dir):
    with pytest.raises(ConfigError, match=r"Model=Run\.Model: needs 'out_shape'; give model\.out_shape=\.\.\."):
        build.build('Model', 'Run.Model', {}, cwd=user_dir, in_shape=(4,))


def test_a_users_ML_py_never_shadows_the_package(user_dir):
    from ML.blocks.mlp import MLP
    assert (user_dir / 'ML.py').exists()  # it raises ImportError if it is ever imported
    assert paths.resolve('ML.blocks.mlp.MLP', 'Model', user_dir) is MLP
    assert paths.resolve('MLP', 'Model', user_dir) is MLP


@pytest.mark.parametrize('overrides, learning_steps', [
    ([], 24_500),                                                           # (50k frames - 1k) / 2
    (['train_frames=100000', 'num_envs=4', 'learn_steps=2'], 24_750),      # (25k steps - 250) // 2 * 2
    (['train_steps=3000', 'learn_after=0', 'learn_per_steps=3'], 1000),
    (['stream=true', 'train_frames=600'], 600),
    (['Env=null', 'Dataset=Digits', 'train_frames=null', 'train_steps=700'], 700),  # a dataset: a step each
])
def test_a_schedule_spans_the_runs_learning_steps(user_dir, overrides, learning_steps):
    config = compose.compose(['task=RL', *overrides], user_dir)
    assert config['scheduler']['total_iters'] == learning_steps


def test_counting_learning_steps_without_a_budget_names_the_key(user_dir):
    with pytest.raises(ConfigError, match=r'^scheduler.total_iters: \$\{learning_steps:\} counts the budget, and the '
                                          r'run has none: set train_steps or train_frames$'):
        compose.compose(['task=RL', 'train_frames=null'], user_dir)


def test_an_environment_without_a_task_is_reinforcement_learning(user_dir):
    config = compose.compose(['Env=CartPole-v1'], user_dir)
    assert (config['Env'], config['Dataset'], config['Agent']) == ('CartPole-v1', None, 'DQN')
    assert compose.compose(['Env=null'], user_dir)['Dataset'] == 'Digits'
    assert compose.compose(['task=recipe', 'Env=null'], user_dir)['Eyes'] == 'CNN', 'a named task is kept'
    atari, dmc = (compose.compose(overrides, user_dir) for overrides in (['Env=Atari', '+env.game=pong'],
                                                                          ['Env=DMC', '+env.task=cheetah_run']))
    assert (atari['Agent'], atari['env']['game'], atari['replay']['clip_reward']) == ('DQN', 'pong', 1)
    assert (dmc['Agent'], dmc['env']['task'], dmc['Eyes']) == ('DrQV2', 'cheetah_run', 'DrQV2Encoder')


def test_a_suites_recipe_answers_to_its_own_name(user_dir):
    config = compose.compose(['task=breakout'], user_dir)
    assert (config['Env'], config['env']['game']) == ('Atari', 'breakout')
    assert compose.compose(['task=walker_walk'], user_dir)['env']['task'] == 'walker_walk'


# ---- every key's type and range, stated once in args.yaml ------------------------------------------------------

def test_every_key_of_args_yaml_states_its_type():
    stated = set(schema.rules())
    keys = {key for key, value in compose.defaults().items() if not isinstance(value, dict) or key in
            compose.twins(compose.defaults())}
    assert keys <= stated
    assert {f'replay.{key}' for key in compose.defaults()['replay']} <= stated


def test_a_rule_reads_as_its_bounds():
    assert schema.parse_rule('0 <= int < 2**32 | null') == (schema.Alternative('int', 0, False, 2 ** 32, True),
                                                             schema.Alternative('null'))
    assert schema.parse_rule('0 < float < 1') == (schema.Alternative('float', 0, True, 1, True),)
    assert schema.parse_rule('float > 0') == (schema.Alternative('float', 0, True, math.inf, False),)
    with pytest.raises(ValueError, match=r'args\.yaml: cannot read the rule \(integer >= 1\)'):
        schema.parse_rule('integer >= 1')


@pytest.mark.parametrize('key, given, taken', [
    ('train_steps', 2.0, 2), ('train_steps', None, None), ('lr', 1, 1), ('experiment', 2024, '2024'),
    ('load', 'MyExp MNIST', 'MyExp MNIST'), ('load', True, True), ('Eyes', ['CNN', 'nn.Flatten()'], ['CNN',
                                                                                                    'nn.Flatten()']),
])
def test_a_value_is_taken_as_the_run_takes_it(key, given, taken):
    assert schema.check(key, given) == taken


# ---- a class replaced by a source of higher priority takes its arguments with it ------------------------------

def test_replacing_the_recipes_optimizer_drops_the_arguments_only_the_old_one_takes(user_dir):
    assert compose.compose(['task=RL'], user_dir)['optim'] == {'lr': 2.3e-3, 'fused': True}
    assert compose.compose(['task=RL', 'Optim=torch.optim.RMSprop'], user_dir)['optim'] == {'lr': 2.3e-3}
    assert compose.compose(['task=RL', 'Optim=torch.optim.AdamW'], user_dir)['optim'] == {'lr': 2.3e-3,
                                                                                            'fused': True}


def test_an_argument_the_user_gives_with_the_new_class_stays_and_is_checked(user_dir):
    config = compose.compose(['task=RL', 'Optim=torch.optim.RMSprop', 'optim.fused=true'], user_dir)
    assert config['optim']['fused'] is True
    with pytest.raises(ConfigError, match=r"^optim\.fused: RMSprop takes no argument 'fused'"):
        build.build('Optim', config['Optim'], config['optim'], cwd=user_dir, partial=True)


def test_a_suites_arguments_go_with_the_suite(user_dir):
    atari = compose.compose(['task=atari/pong', 'Model=CNN', 'Agent=DrQV2'], user_dir)
    assert atari['model'] == {'depth': 1}  # CNN takes depth, not the MLP's hidden
    assert atari['agent'] == {}            # DQN's epsilon schedule, which DrQV2 does not take
    assert compose.compose(['task=atari/pong', 'Env=CartPole-v1'], user_dir)['env'] == {}
    assert compose.compose(['task=atari/pong', 'Env=ALE/Pong-v5'], user_dir)['env'] == {'game': 'pong'}  # ale-py's
    # AtariEnv takes game too; before ale_py registered the id, the build checks it
    assert compose.compose(['task=RL', 'Scheduler=null'], user_dir)['scheduler'] == {}
