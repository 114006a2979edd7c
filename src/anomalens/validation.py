"""Checks of settings and saved values, each failure a ConfigError naming the value and what it
may be: constructors check their arguments with them, and loading a model checks every field
of its files (its configuration through those constructors, its arrays against the method's
own declaration, `ArraySpec`)."""

import math
import numbers
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from anomalens.errors import ConfigError


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` if it is an integer (not a bool) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    _check_range(name, value, minimum, maximum)
    return int(value)


def number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
) -> float:
    """`value` if it is a finite real number (not a bool) within [minimum, maximum] and
    strictly between `above` and `below`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    _check_range(name, value, minimum, maximum, above, below)
    return float(value)


def choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """`value` if it is one of `choices`."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    """`value` if it is True or False."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def text(name: str, value: Any) -> str:
    """`value` if it is a string."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {_short(value)}")
    return value


def texts(name: str, value: Any) -> list[str]:
    """`value` if it is a list of strings."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{name} must be a list of strings, got {_short(value)}")
    return value


def numbers_list(name: str, value: Any) -> list[float]:
    """`value` if it is a list of finite numbers."""
    if not isinstance(value, list):
        raise ConfigError(f"{name} must be a list of numbers, got {_short(value)}")
    return [number(f"{name}[{index}]", item) for index, item in enumerate(value)]


def mapping(name: str, value: Any, required: Collection[str] = ()) -> Mapping[str, Any]:
    """`value` if it is a JSON object holding every key in `required`."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be an object, got {_short(value)}")
    missing = [key for key in required if key not in value]
    if missing:
        raise ConfigError(f"{name} lacks {', '.join(missing)}")
    return value


def _check_range(
    name: str,
    value: float,
    minimum: float | None,
    maximum: float | None,
    above: float | None = None,
    below: float | None = None,
) -> None:
    left = f"[{minimum}" if minimum is not None else f"({above}" if above is not None else "(-inf"
    right = f"{maximum}]" if maximum is not None else f"{below})" if below is not None else "inf)"
    inside = (
        (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
        and (above is None or value > above)
        and (below is None or value < below)
    )
    if not inside:
        raise ConfigError(f"{name} must be in {left}, {right}, got {value!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


Dimension = int | str | None
"""One side of a declared array shape: a fixed size, a name that must have one size in every
array of a declaration, or None for any size."""


@dataclass(frozen=True)
class ArraySpec:
    """What one saved array must be: its shape, its dtype (or one of several), and whether it
    must be there."""

    shape: tuple[Dimension, ...]
    dtype: str | tuple[str, ...]
    required: bool = True

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The dtypes the array may have."""
        return (self.dtype,) if isinstance(self.dtype, str) else self.dtype


def prefixed_specs(specs: Mapping[str, ArraySpec], prefix: str) -> dict[str, ArraySpec]:
    """`specs` of a part's state, keyed and with named dimensions under `prefix`, so that the
    parts of one state (ensemble members, a kNN part) do not share sizes by accident."""
    return {
        prefix + key: ArraySpec(
            tuple(prefix + side if isinstance(side, str) else side for side in spec.shape),
            spec.dtype,
            spec.required,
        )
        for key, spec in specs.items()
    }


def check_arrays(arrays: Mapping[str, np.ndarray], specs: Mapping[str, ArraySpec]) -> None:
    """Raise ConfigError naming the first array that is missing, undeclared, of another dtype
    or shape than `specs` declares, or holds a value that is not finite."""
    unknown = sorted(set(arrays) - set(specs))
    if unknown:
        raise ConfigError(f"undeclared arrays {', '.join(unknown[:5])}")
    sizes: dict[str, int] = {}
    for key, spec in specs.items():
        if key not in arrays:
            if spec.required:
                raise ConfigError(f"array {key} is missing")
            continue
        array, shape = arrays[key], spec.shape or (1,)  # saved scalars are 1-element arrays
        if array.dtype not in [np.dtype(dtype) for dtype in spec.dtypes]:
            raise ConfigError(f"array {key} is {array.dtype}, expected {' or '.join(spec.dtypes)}")
        if array.ndim != len(shape):
            raise ConfigError(f"array {key} has shape {array.shape}, expected {shape}")
        for axis, (size, side) in enumerate(zip(array.shape, shape, strict=True)):
            expected = sizes.setdefault(side, size) if isinstance(side, str) else side
            if expected is not None and size != expected:
                raise ConfigError(
                    f"array {key} has shape {array.shape}: axis {axis} should be {expected}"
                    + (f" ({side})" if isinstance(side, str) else "")
                )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ConfigError(f"array {key} holds values that are not finite")
