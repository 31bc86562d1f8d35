"""One adapter, Items, reads every item format of a dataset as (observation, label) tensors: pairs, longer tuples,
dicts (by `dataset.keys`), holding tensors, numpy arrays, PIL images, Python numbers or lists of numbers."""
from collections.abc import Mapping

import numpy as np
import torch
from torchvision.transforms.functional import pil_to_tensor

from ML.errors import ConfigError, MLError, ShapeError

OBS_KEYS = ('image', 'img', 'x', 'input', 'inputs', 'data', 'obs', 'features')  # a dict item's observation ...
LABEL_KEYS = ('label', 'labels', 'target', 'targets', 'y', 'class')             # ... and label, first found first


class Items:
    """Reads a dataset's items, whatever their format, as (observation, label) tensors.

    An item is a pair (observation, label); a longer tuple or list, of which `keys` picks two by position (by default
    the first two); or a dict, read by `keys` (by default the first of OBS_KEYS and the first of LABEL_KEYS it has).
    A value is a tensor, a numpy array or scalar, a PIL image, a Python number or boolean, or a list of numbers.
    The first item sets the format: integer or boolean labels (one value per sample) are classes, float labels of
    any shape regression targets.

    item()     one item in the compact form held in memory and passed between processes: observations of 8-bit
               images as uint8 (a PIL image as (C, H, W)), booleans as bool, any other number as float32; a class
               label as an int64 scalar, a regression target as float32 of its own shape
    collate()  compact items stacked into a batch (B, ...)
    batch()    a compact batch made ready to learn from: observations float32, 8-bit images scaled to [0, 1] (as
               torchvision's ToTensor does), labels as they are

    Raises ConfigError when `keys` does not fit the items, ShapeError for integer labels of several values or items
    of differing shapes, MLError for an item that is not two values or a value that is not numbers.
    """

    def __init__(self, first, keys=None, name: str = 'the dataset'):
        self.name = name
        self.keys, self.reading = self._keys(first, keys)
        label = _tensor(first[self.keys[1]], 'label', name)
        self.classify, self.boolean = not label.is_floating_point(), label.dtype == torch.bool
        if self.classify and label.numel() != 1:
            raise ShapeError(f'Dataset={name}: its labels are integers of shape {tuple(label.shape)}; a class label '
                             f'is one integer per sample (as floats they would be regression targets)')

    def _keys(self, item, keys) -> tuple:
        """The keys of the observation and the label in an item, and how they were picked (for the description)."""
        if keys is not None and (isinstance(keys, (str, bytes)) or len(keys) != 2):
            raise ConfigError(f"dataset.keys={keys}: names two keys, the observation's and the label's "
                              f"(dataset.keys=[image,label])")
        if isinstance(item, Mapping):
            names, option = list(item), 'dataset.keys' + (f'=[{",".join(map(str, keys))}]' if keys else '')
            keys = list(keys or (next((k for k in OBS_KEYS if k in item), None),
                                 next((k for k in LABEL_KEYS if k in item), None)))
            if any(key not in item for key in keys):
                raise ConfigError(f"{option}: the items of Dataset={self.name} are dicts with keys {names}; pick "
                                  f"the observation's and the label's: dataset.keys=[<observation>,<label>]")
            return keys, f"each item's {keys[0]!r} and {keys[1]!r}"
        if isinstance(item, (tuple, list)) and len(item) >= 2:
            keys = list(keys or (0, 1))
            if not all(isinstance(key, int) and -len(item) <= key < len(item) for key in keys):
                raise ConfigError(f'dataset.keys={keys}: the items of Dataset={self.name} are {type(item).__name__}s '
                                  f'of {len(item)} values, picked by position (dataset.keys=[0,1])')
            return keys, None if len(item) == 2 else f"values {keys[0]} and {keys[1]} of each item's {len(item)}"
        length = f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''
        raise MLError(f'Dataset={self.name}: item 0 is a {type(item).__name__}{length}, not an (observation, label) '
                      f'pair or a dict; make __getitem__ return both')

    def item(self, item) -> tuple:
        obs = _tensor(item[self.keys[0]], 'observation', self.name)
        if obs.dtype not in (torch.uint8, torch.bool, torch.float32):
            obs = obs.float()
        label = _tensor(item[self.keys[1]], 'label', self.name)
        return obs, label.reshape(()).long() if self.classify else label.float()

    def collate(self, items: list) -> tuple:
        observations, labels = zip(*items)
        for what, values in (('observations', observations), ('labels', labels)):
            shapes = list(dict.fromkeys(tuple(value.shape) for value in values))
            if len(shapes) > 1:
                raise ShapeError(f'Dataset={self.name}: its {what} differ in shape ({shapes[0]} and {shapes[1]}); '
                                 f'give them one shape in the dataset (e.g. a torchvision Resize)')
        return torch.stack(observations), torch.stack(labels)

    @staticmethod
    def batch(obs: torch.Tensor, labels: torch.Tensor) -> tuple:
        return (obs.float().div_(255) if obs.dtype == torch.uint8 else obs.float()), labels


def _tensor(value, what: str, name: str) -> torch.Tensor:
    """One value of an item as a tensor; an MLError for what is not numbers (a string, None, a ragged list)."""
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, 'getbands'):  # a PIL image, as torchvision's datasets give without a transform
        return pil_to_tensor(value.convert('RGB') if value.mode == 'P' else value)  # a palette's indices are no pixels
    try:
        array = np.asarray(value)
    except ValueError:  # a ragged list
        array = None
    if array is None or array.dtype.kind not in 'biuf':
        raise MLError(f'Dataset={name}: its {what}s are {type(value).__name__} ({value!r:.40}); ML learns from '
                      f'numbers: tensors, numpy arrays, PIL images, numbers or lists of numbers')
    return torch.tensor(array if min(array.strides, default=0) >= 0 else array.copy())  # a copy: torch has no
    # negative strides (a flipped array), nor read-only tensors (an array of a read-only memory map)
