"""ML: a hyperparameter engine and trainer for PyTorch.

    import ML
    agent = ML.launch('eyes.depth=5', Model=my_model, Dataset='CIFAR10')

Importing ML is free: the heavy parts load when launch or load_agent is called.
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


__all__ = ['launch', 'load_agent', 'MLError']
