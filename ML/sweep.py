"""-m: a sweep over any hyperparameters, run by Hydra's multirun on its launchers (basic, joblib, submitit, ray)."""
from pathlib import Path

from ML.language import compose


def sweep(overrides: list, live: dict = None) -> list:
    """Every member's agent, in the order Hydra ran them."""
    from ML.launcher import train
    cwd = Path.cwd()
    prepared = compose.prepare(overrides, cwd)

    def member(config):
        return train(compose.validate(config), live).agent

    app = compose.hydra_app(cwd)
    batches = app.multirun(config_name='args', task_function=member, overrides=[
        'hydra.job.chdir=false',  # runs write under the user's directory, as single runs do
        'hydra.output_subdir=null',  # each run's folder already holds its config.yaml
        'hydra.sweep.dir=Benchmarking/${experiment}/sweeps/${now:%Y-%m-%d_%H-%M-%S}',
        *prepared])
    return [job.return_value for batch in batches for job in batch]
