"""Learners, one file each. An agent is an nn.Module with two verbs:

    act(obs, counters, greedy=False) -> actions or predictions, a tensor with one row per observation
    learn(batch, counters) -> dict of plain floats to log (it updates itself; it never changes the counters)

Its constructor takes what it needs by name; the engine supplies `eyes`, `model` (built networks), `optim`,
`scheduler` (callables taking parameters / an optimizer), `obs_spec`, `action_spec` and `label_spec` to any
agent whose signature names them, and the lowercase `agent.*` arguments to the rest.
"""
