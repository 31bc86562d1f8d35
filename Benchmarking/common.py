"""What every benchmark here shares: how loaded this machine's CPU is while a figure is taken."""
from pathlib import Path


def pressure() -> str:
    """The CPU pressure now ('avg10=...', from /proc/pressure/cpu): a figure taken under load is to be discarded."""
    try:
        return Path('/proc/pressure/cpu').read_text().split()[1]
    except OSError:
        return 'avg10=n/a'
