"""Signals that end a run gracefully: SIGTERM (what `kill` and SLURM send before a time limit or a preemption),
SIGHUP (a closed terminal) and SIGINT (Ctrl-C). The first asks the loop to stop: it finishes the step it is in,
saves its checkpoint and replay, and the run ends with `status: interrupted` and exit code 128 + the signal's
number, as a shell reports a process a signal ended. A second signal stops at once (KeyboardInterrupt), as
Lightning's and submitit's handlers let a user insist."""
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Interruptions:
    """Within `with Interruptions() as stop:`, `stop.requested` is the first signal that arrived (or None).
    Handlers are installed only in the main thread (Python delivers signals there alone); elsewhere, a launcher's
    worker thread, signals keep their old handling. The earlier handlers come back on exit."""

    def __init__(self):
        self.requested, self._previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame):
        if self.requested is not None:
            raise KeyboardInterrupt(f'{signal.Signals(number).name} again: stopped at once')
        self.requested = number
        print(f'\nML: {signal.Signals(number).name}: finishing this step, then saving '
              f'(send it again to stop at once)', file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
        return False

    @property
    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ''
