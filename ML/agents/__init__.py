"""Learners, one file each. An agent is an nn.Module with two verbs:

    act(obs, counters, greedy=False) -> actions or predictions, a tensor with one row per observation
    learn(batch, counters) -> dict of plain floats to log (it updates itself; it never changes the counters)

Its constructor takes what it needs by name; the engine supplies `eyes`, `model` (built networks), `optim`,
`scheduler` (callables taking parameters / an optimizer), `update` (the optimizer step, update.Update),
`obs_spec`, `action_spec` and `label_spec` to any agent whose signature names them, and the lowercase `agent.*`
arguments to the rest.

learn() writes its loss out and hands it to `update`, as it would call optimizer.step(); update does the
backward pass, gradient accumulation (accumulate_grad_batches), clipping (max_grad_norm), mixed precision
(precision, accelerate) with fp16's loss scaler, and the optimizer's and scheduler's steps:

    with self.update.autocast():                    # the forward passes in the run's precision
        loss = F.cross_entropy(self.model(batch.obs), batch.label)
    self.update(loss, self.optim, self.scheduler)   # returns the gradient's norm when it clips
    self.update.soft_update(self.target, self.online, tau)   # target networks: Polyak averaging

Keep `update` as an attribute (self.update): checkpoints save its state (the fp16 loss scale) with the
optimizers'. compile=true and channels_last=true apply to any agent's networks (compiling.prepare).
"""
