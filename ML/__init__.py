"""ML: a hyperparameter engine and trainer for PyTorch.

    import ML
    agent = ML.launch('eyes.depth=5', Model=my_model, Dataset='CIFAR10')

Importing ML is free: the heavy parts load when launch, load_agent or plot is called.
"""
from ML.errors import MLError


def launch(*overrides, **hyperparams):
    """Train with the language of the command line; returns the trained agent. See ML.launch.launch."""
    from ML.launcher import launch as _launch
    return _launch(*overrides, **hyperparams)


def load_agent(path_or_words, **hyperparams):
    """The agent of a checkpoint (a path.pt, or words naming one), rebuilt from its config and loaded."""
    from ML.launcher import load_agent as _load_agent
    return _load_agent(path_or_words, **hyperparams)


def plot(*folders_or_overrides, **keys):
    """Figures and tables of runs' logs, as the Plot command draws them; returns what it wrote. See ML.records.plot.

        ML.plot(experiments=['DQN', 'DoubleDQN'], band='se')
    """
    from ML.records.plot import plot as _plot
    return _plot(*folders_or_overrides, **keys)


__all__ = ['launch', 'load_agent', 'plot', 'MLError']
