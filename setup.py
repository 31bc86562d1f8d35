from setuptools import find_packages, setup

setup(
    name='ML',
    version='0.1.0',
    description='A hyperparameter engine and trainer for PyTorch: one language, one loop.',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['ML', 'ML.*']) + ['ML.Hyperparams'],
    package_dir={'ML.Hyperparams': 'Hyperparams'},  # the recipes live at the top of the repository, shipped inside ML
    package_data={'ML.Hyperparams': ['*.yaml', 'task/*.yaml', 'task/**/*.yaml']},
    install_requires=[
        'torch>=2.4',            # fused Adam on CPU
        'torchvision>=0.19',
        'numpy>=1.24',
        'hydra-core>=1.3,<1.4',  # ML drives Hydra's internal multirun API, which 1.4 may change
        'omegaconf>=2.3,<2.4',
        'gymnasium>=1.1',  # the vector API's autoreset_mode
        'scikit-learn>=1.2',     # ships the 8x8 digits the default task trains on, with no network
        'matplotlib>=3.7',
        'tqdm>=4.60',
        'pyyaml>=6',
        'psutil>=5',             # the replay warns, with numbers, when it would not fit in memory
        'accelerate>=1.0',       # Hugging Face accelerate: whether a device takes bf16 (accelerate=true)
    ],
    extras_require={
        'test': ['pytest>=7', 'hypothesis>=6.100'],  # hypothesis: tests/test_fuzz.py generates command lines
        'atari': ['ale-py>=0.10.1', 'opencv-python-headless>=4.6'],  # 0.10.1: the first ale-py on numpy 2; gymnasium's
                                                                      # AtariPreprocessing resizes with OpenCV
        'dmc': ['dm-control>=1.0.50,<1.1', 'mujoco>=3.17,<4'],  # mujoco 4 breaks dm-control 1.0.50
        'box2d': ['box2d>=2.3.10'],  # gymnasium's LunarLander, BipedalWalker, CarRacing (a wheel: no swig needed)
        'video': ['moviepy>=2', 'pygame>=2.5'],  # gymnasium's RecordVideo writes with moviepy; classic control draws
                                                 # with pygame
        'bench': ['stable-baselines3>=2.0',      # the peers the Benchmarking/ scripts measure against
                  'lightning>=2.2'],             # PyTorch Lightning's Trainer (Benchmarking/cnn_cpu.py)
        'plot': ['rliable>=1.2'],  # Plot's aggregates over tasks (IQM, median, mean; Agarwal et al. 2021)
        # -m on more launchers, and searches: optuna 5's ask/tell on an RDB storage (SQLAlchemy 2), CMA-ES on cmaes;
        # not hydra-optuna-sweeper, which pins optuna<3
        'experiments': ['hydra-joblib-launcher>=1.2', 'hydra-submitit-launcher>=1.2', 'optuna>=5', 'cmaes>=0.10'],
        # trackers (tensorboard=true, wandb=true, mlflow=true); wandb 0.19.10 takes reinit='create_new'; mlflow-skinny,
        # not mlflow, which pins python-dateutil down, with what its default store (sqlite:///mlflow.db) needs
        'tensorboard': ['tensorboard>=2.12'],
        'wandb': ['wandb>=0.19.10'],
        'mlflow': ['mlflow-skinny>=3', 'sqlalchemy>=1.4', 'alembic>=1.8,!=1.10.0'],
    },
    entry_points={'console_scripts': ['ML=ML.cli:main', 'Plot=ML.records.plot:main']},
)
