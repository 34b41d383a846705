"""The library's error for a bad argument, so that a caller can name its own setting for it."""


class ArgumentError(ValueError):
    """``name = value: allowed`` for the library argument ``name`` (e.g. ``steps = 2000: must be <= 1000 ...``)."""

    def __init__(self, name: str, value, allowed: str):
        super().__init__(f"{name} = {value!r}: {allowed}")
        self.name, self.value, self.allowed = name, value, allowed
