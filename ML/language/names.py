"""The built-in short names of the language, as dotted paths (strings only: nothing is imported until asked)."""

SHORT_NAMES = {
    # blocks
    'Identity': 'torch.nn.Identity',
    'MLP': 'ML.blocks.mlp.MLP',
    'CNN': 'ML.blocks.cnn.CNN',
    'ResNet18': 'ML.blocks.resnet.ResNet18',
    'Transformer': 'ML.blocks.transformer.Transformer',
    'ViT': 'ML.blocks.transformer.ViT',
    'ConvGroups': 'ML.blocks.convgroups.ConvGroups',
    # augmentations
    'RandomShiftsFlip': 'ML.blocks.augment.RandomShiftsFlip',
    'RandomCrop': 'ML.blocks.augment.RandomCrop',
    'Flip': 'ML.blocks.augment.Flip',
    # agents
    'Classifier': 'ML.agents.classifier.Classifier',
    'DQN': 'ML.agents.dqn.DQN',
    'DrQV2': 'ML.agents.drqv2.DrQV2',
    'DrQV2Encoder': 'ML.agents.drqv2.Encoder',
    'DrQV2Actor': 'ML.agents.drqv2.Actor',
    # environment suites
    'Atari': 'ML.world.atari.Atari',
    'DMC': 'ML.world.dmc.DMC',
    # datasets
    'Digits': 'ML.world.datasets.Digits',
    'MNIST': 'torchvision.datasets.MNIST',
    'FashionMNIST': 'torchvision.datasets.FashionMNIST',
    'KMNIST': 'torchvision.datasets.KMNIST',
    'CIFAR10': 'torchvision.datasets.CIFAR10',
    'CIFAR100': 'torchvision.datasets.CIFAR100',
    # optimizers
    'Adam': 'torch.optim.Adam',
    'AdamW': 'torch.optim.AdamW',
    'SGD': 'torch.optim.SGD',
}

# The optional installs (setup.py extras) that bring the modules some short names need.
EXTRAS = {'ale_py': 'atari', 'cv2': 'atari', 'dm_control': 'dmc', 'mujoco': 'dmc', 'moviepy': 'video',
          'pygame': 'video'}

# Modules a dotted path or a code value may start from without importing them by full name (`nn.Linear`, `F.relu`).
SCOPE_MODULES = {'torch': 'torch', 'nn': 'torch.nn', 'F': 'torch.nn.functional'}
