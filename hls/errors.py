"""The library's error for a bad argument, so that a caller can name its own setting for it."""

import numbers


class ArgumentError(ValueError):
    """``name = value: allowed`` for the library argument ``name`` (e.g. ``steps = 2000: must be <= 1000 ...``)."""

    def __init__(self, name: str, value, allowed: str):
        super().__init__(f"{name} = {value!r}: {allowed}")
        self.name, self.value, self.allowed = name, value, allowed


def check_integer(name: str, value, low: int = 1, high: int | None = None, allowed: str | None = None) -> int:
    """``value`` when it is an integer (Python's or numpy's, not a bool) in [low, high]; else the ArgumentError naming
    ``name`` (with ``allowed``, or the range, as what is allowed)."""
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not integral or value < low or (high is not None and value > high):
        raise ArgumentError(name, value, allowed or f"must be an integer >= {low}" + (
            "" if high is None else f" and <= {high}"))
    return value


def check_generators(generator, batch: int) -> None:
    """A list of generators needs one per image of the batch."""
    if isinstance(generator, list) and len(generator) != batch:
        raise ArgumentError("generator", f"a list of {len(generator)}", f"needs one per image ({batch})")
