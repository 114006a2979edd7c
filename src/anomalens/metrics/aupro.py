"""Area under the per-region-overlap (PRO) curve up to a false-positive-rate limit.

Each 8-connected ground-truth region counts equally, whatever its size: the PRO at a threshold
is the mean over all regions of the share of the region's pixels scoring at or above it. So
every anomalous pixel adds 1 / (its region's size × number of regions) to the PRO of the
thresholds at or below its score, which lets one histogram of these weights stand for all
regions at once.
"""

import numpy as np
from scipy import ndimage

from anomalens.localization.regions import EIGHT_CONNECTED


def region_weights(gt_mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Per pixel, 1 / size of its 8-connected ground-truth region (0 outside), and region count.

    Args:
        gt_mask: (H, W) bool ground truth, True where anomalous.
    """
    regions, count = ndimage.label(gt_mask, structure=EIGHT_CONNECTED)
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    inverse_sizes = np.zeros(count + 1)
    inverse_sizes[1:] = 1.0 / sizes[1:]
    return inverse_sizes[regions], count


def pro_auc(normal: np.ndarray, overlap: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, `fpr_limit`], divided by `fpr_limit`.

    The curve joins the operating points with straight lines (trapezoid rule) and is cut at the
    limit by linear interpolation.

    Args:
        normal: number of normal pixels at each threshold, highest threshold first.
        overlap: rise of the PRO at each threshold (the `region_weights` of its pixels divided
            by the number of regions), highest threshold first; sums to 1.
        fpr_limit: the false-positive rate up to which the area is taken, in (0, 1].
    """
    fpr = np.concatenate([[0.0], np.cumsum(normal)]) / np.sum(normal)
    pro = np.concatenate([[0.0], np.cumsum(overlap)])
    inside = int(np.searchsorted(fpr, fpr_limit, side="right"))
    fpr_points, pro_points = fpr[:inside], pro[:inside]
    if inside < fpr.size:
        before, after = inside - 1, inside
        share = (fpr_limit - fpr[before]) / (fpr[after] - fpr[before])
        fpr_points = np.append(fpr_points, fpr_limit)
        pro_points = np.append(pro_points, pro[before] + share * (pro[after] - pro[before]))
    return float(np.trapezoid(pro_points, fpr_points) / fpr_limit)
