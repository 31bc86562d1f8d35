"""A search space in Hydra's sweep grammar, as optuna's distributions.

    lr=tag(log,interval(1e-4,1e-1))    FloatDistribution(1e-4, 0.1, log=True)
    lr=interval(0.1,0.9)               FloatDistribution(0.1, 0.9)
    model.depth=int(interval(1,8))     IntDistribution(1, 8)          (tag(log, ...) makes it log-uniform)
    model.depth=range(1,4)             IntDistribution(1, 3)          (range's stop is left out, as Python's is)
    momentum=range(0.8,1,0.05)         FloatDistribution(0.8, 0.95, step=0.05)
    model.hidden=choice(64,128,256)    CategoricalDistribution([64, 128, 256]); `64,128,256` and shuffle() too

The same forms hydra-optuna-sweeper reads (Hydra's optimizing-sweeper convention), parsed by Hydra's own
OverridesParser. A trial's value goes back into an override in the grammar the launcher composes.
"""
from decimal import Decimal

from ML.errors import ConfigError


class Param:
    """One searched key: its override's key element (`++model.hidden`), the optuna distribution of its values, and
    for choices the parsed element each value stands for (a list or a quoted string is not a value optuna stores)."""

    def __init__(self, override):
        from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
        self.name, self.key = override.key_or_group, override.get_key_element()
        self.text = override.get_value_string() if override.input_line else ''
        sweep = override.value()
        if not isinstance(sweep, (ChoiceSweep, IntervalSweep, RangeSweep)):
            raise ConfigError(f'{self.name}={self.text}: a search takes choice(...), range(...), interval(...) '
                              f'and tag(log, interval(...)), not glob(...)')
        unknown = set(sweep.tags) - {'log'}
        if unknown:
            raise ConfigError(f'{self.name}: tag {", ".join(sorted(unknown))} means nothing to a search; '
                              f'tag(log, interval(a,b)) searches on a log scale')
        self.elements = {}
        if isinstance(sweep, IntervalSweep):
            self.distribution = _interval(self.name, sweep)
        elif isinstance(sweep, RangeSweep):
            self.distribution = _range(self.name, sweep)
        else:
            if 'log' in sweep.tags:
                raise ConfigError(f'{self.name}: tag(log, ...) takes an interval or a range, not a choice')
            from optuna.distributions import CategoricalDistribution
            self.elements = {_encode(element): element for element in sweep.list}
            self.distribution = CategoricalDistribution(list(self.elements))

    def override(self, value) -> str:
        """The trial's value as an override the launcher composes: `++model.hidden=128`."""
        from hydra.core.override_parser.types import Transformer
        return f'{self.key}={Transformer.str(self.elements.get(value, value))}'

    def value(self, value):
        """The trial's value as a config holds it (a list for a choice of lists), for a recipe."""
        if value not in self.elements:
            return value
        from hydra.core.override_parser.overrides_parser import OverridesParser
        return OverridesParser.create().parse_override(self.override(value)).value()


def parse(overrides: list) -> tuple:
    """Splits overrides (strings, in the grammar Hydra's launcher composes) into the space, {name: Param}, and the
    fixed overrides every trial shares, in their order. Raises ConfigError naming an override that cannot be
    searched."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(' '.join(str(error).split())) from error
    space = {override.key_or_group: Param(override) for override in parsed if override.is_sweep_override()}
    fixed = [text for text, override in zip(overrides, parsed) if not override.is_sweep_override()]
    return space, fixed


def _encode(element):
    """A choice as optuna stores it: numbers, strings, booleans and null as they are, a quoted string as its text,
    a list or a dict as its text in the grammar."""
    from hydra.core.override_parser.types import QuotedString, Transformer
    if isinstance(element, QuotedString):
        return element.text
    return element if element is None or isinstance(element, (str, int, float, bool)) else Transformer.str(element)


def _interval(name: str, sweep):
    from optuna.distributions import FloatDistribution, IntDistribution
    log = 'log' in sweep.tags
    if sweep.start >= sweep.end or (log and sweep.start <= 0):
        raise ConfigError(f'{name}: interval({sweep.start},{sweep.end}) needs low < high'
                          f'{" and low > 0 on a log scale" if log else ""}')
    if isinstance(sweep.start, int) and isinstance(sweep.end, int):  # int(interval(a,b))
        return IntDistribution(sweep.start, sweep.end, log=log)
    return FloatDistribution(float(sweep.start), float(sweep.end), log=log)


def _range(name: str, sweep):
    """range(start, stop, step) as the values it enumerates: stop is left out, a negative step counts down."""
    from optuna.distributions import FloatDistribution, IntDistribution
    values = list(sweep.range())
    if not values:
        raise ConfigError(f'{name}: range({sweep.start},{sweep.stop},{sweep.step}) holds no value')
    log, step = 'log' in sweep.tags, abs(sweep.step)
    if log and (step != 1 or values[0] <= 0 or values[-1] <= 0):
        raise ConfigError(f'{name}: tag(log, range(...)) needs positive values and a step of 1 '
                          f'(or tag(log, interval(a,b)))')
    low, high = min(values), max(values)
    if all(isinstance(value, int) for value in (sweep.start, sweep.stop, sweep.step)):
        return IntDistribution(low, high, log=log, step=step)
    # the last value is start + k * step exactly (Hydra counts in decimals too), so optuna's grid ends on it
    high = float(Decimal(str(low)) + Decimal(str(step)) * (len(values) - 1))
    return FloatDistribution(float(low), high, step=float(step))
