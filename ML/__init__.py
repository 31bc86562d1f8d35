"""ML: a hyperparameter engine and trainer for PyTorch.

    import ML
    agent = ML.launch('eyes.depth=5', Model=my_model, Dataset='CIFAR10')

Importing ML is free: the heavy parts load when launch, load_agent or plot is called.
"""
from ML.errors import MLError


def launch(*overrides, **hyperparams):
    """Trains with the language of the command line and returns the trained agent, in eval mode.

        agent = ML.launch('eyes.depth=5', task='classify', Model=my_model, Dataset='MNIST')
        predictions = agent.act(images, greedy=True)   # classes, values or actions, one row per input
        agents = ML.launch('-m', 'seed=1,2')            # a sweep: every member's agent, in order

    Positional strings are overrides in the command line's grammar (`key=value`, '-m' for a sweep); keywords are
    values or live objects (an instance is used as it is, a class is built with its arguments and inferred shapes).
    A script that calls launch also reads its own command line, which wins over the code: `python Run.py Eyes=CNN`.

    Raises ML.MLError (a one-line message naming the key or path) for input that cannot run, before anything is
    written; ML.errors.Interrupted when a signal stopped the run after it saved."""
    from ML.training import launch as _launch
    return _launch(*overrides, **hyperparams)


def load_agent(path_or_words, **hyperparams):
    """The agent of a checkpoint (a path.pt, or words its path under ./Checkpoints holds: 'MyExp MNIST'), rebuilt
    from the config it holds and loaded, in eval mode: `agent.act(obs, greedy=True)` predicts. Objects passed from
    code to the run are passed again by the same key (`Model=my_model`). Raises ML.errors.CheckpointError."""
    from ML.training import load_agent as _load_agent
    return _load_agent(path_or_words, **hyperparams)


def plot(*folders_or_overrides, **keys):
    """Figures and tables of runs' logs, as the Plot command draws them; returns what it wrote. See ML.records.plot.

        ML.plot(experiments=['DQN', 'DoubleDQN'], band='se')
    """
    from ML.records.plot import plot as _plot
    return _plot(*folders_or_overrides, **keys)


__all__ = ['launch', 'load_agent', 'plot', 'MLError']
