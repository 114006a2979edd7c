"""Weighted histogram of scores in fine equal bins whose span grows to cover every score seen."""

import math

import numpy as np


class ScoreHistogram:
    """Per-bin sums of weights attached to scores, in several channels, in bounded memory.

    Bin k covers offsets [k·w, (k+1)·w) from the first minimum score seen, w a power of two.
    When scores arrive outside the span of `bins` bins, w doubles as often as needed by merging
    neighbouring bins, so old bin edges stay edges and equal scores always share a bin. After
    any scores, w < 2·(max − min)/(bins − 1) over all scores seen (or all scores are equal).

    Args:
        channels: number of weight channels summed per bin.
        bins: number of bins; memory is channels × bins float64.
    """

    def __init__(self, channels: int, bins: int = 2**20):
        if bins < 2:
            raise ValueError(f"a score histogram needs at least 2 bins, got {bins}")
        self.bins = bins
        self._sums = np.zeros((channels, bins))
        self._origin: float | None = None
        self._exponent = -1074  # bin width 2**exponent: as fine as floats go until scores differ
        self._first_key = 0
        self._low = self._high = 0.0  # lowest and highest offset from the origin seen

    def add(self, scores: np.ndarray, weights: list[np.ndarray]) -> None:
        """Add `weights[c][i]` to channel c of the bin of `scores[i]`.

        Args:
            scores: (n,) finite float64 scores.
            weights: one (n,) array per channel.
        """
        if scores.size == 0:
            return
        if self._origin is None:
            self._origin = float(scores.min())
        offsets = scores - self._origin
        self._cover(float(offsets.min()), float(offsets.max()))
        index = self._keys(offsets) - self._first_key
        for sums, channel_weights in zip(self._sums, weights, strict=True):
            sums += np.bincount(index, weights=channel_weights, minlength=self.bins)

    def descending(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower edges of the used bins from the highest down, and their (channels, used) sums."""
        used = self._used()
        keys = self._first_key + np.arange(used)
        edges = (self._origin or 0.0) + np.ldexp(keys.astype(np.float64), self._exponent)
        return edges[::-1], self._sums[:, :used][:, ::-1]

    def _cover(self, low: float, high: float) -> None:
        """Coarsen and shift the bins so that offsets `low`..`high` fall inside them."""
        low, high = min(low, self._low), max(high, self._high)
        exponent = self._exponent
        if high > low:  # start a little below the coarsest possible answer, then step up
            exponent = max(exponent, math.floor(math.log2(high - low) - math.log2(self.bins)) - 1)
        while self._key(high, exponent) - self._key(low, exponent) >= self.bins:
            exponent += 1
        first_key = self._key(low, exponent)
        if (exponent, first_key) != (self._exponent, self._first_key):
            old_keys = self._first_key + np.arange(self._used())
            index = (old_keys >> min(exponent - self._exponent, 63)) - first_key
            self._sums = np.stack(
                [
                    np.bincount(index, weights=sums[: index.size], minlength=self.bins)
                    for sums in self._sums
                ]
            )
        self._exponent, self._first_key = exponent, first_key
        self._low, self._high = low, high

    def _used(self) -> int:
        """Number of bins from the first up to the one holding the highest score."""
        return self._key(self._high, self._exponent) - self._first_key + 1

    def _keys(self, offsets: np.ndarray) -> np.ndarray:
        """Bin keys of `offsets` at the current width (exact: scaling by a power of two)."""
        return np.floor(np.ldexp(offsets, -self._exponent)).astype(np.int64)

    @staticmethod
    def _key(offset: float, exponent: int) -> int:
        """Bin key of one offset for bin width 2**exponent, computed as `_keys` does."""
        return math.floor(math.ldexp(offset, -exponent))
