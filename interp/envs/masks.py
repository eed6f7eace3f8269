"""Object boxes to boolean masks in the coordinates of a resized frame."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

Box = tuple[float, float, float, float]  # x, y, width, height in source-frame pixels


def box_to_mask(box: Box | None, source_hw: tuple[int, int], frame_size: int) -> np.ndarray:
    """Mask of the pixels of a ``frame_size`` x ``frame_size`` resize that the box contributes to.

    A target pixel ``(r, c)`` covers the source area ``[r*H/S, (r+1)*H/S) x [c*W/S, (c+1)*W/S)``; it belongs to
    the mask when that area overlaps the box. This is exactly the set of pixels an area-averaging resize
    (``cv2.INTER_AREA``) takes the box's source pixels into.

    Args:
        box: ``(x, y, w, h)`` in source pixels, or None for an absent object.
        source_hw: ``(H, W)`` of the source frame, e.g. ``(210, 160)`` for ALE.
        frame_size: side ``S`` of the square target frame.

    Returns:
        bool ``[S, S]``; all False for an absent or empty box.
    """
    mask = np.zeros((frame_size, frame_size), dtype=bool)
    if box is None:
        return mask
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return mask
    height, width = source_hw
    r0, r1 = _cover(y, h, height, frame_size)
    c0, c1 = _cover(x, w, width, frame_size)
    mask[r0:r1, c0:c1] = True
    return mask


def _cover(start: float, length: float, source: int, target: int) -> tuple[int, int]:
    """Target index range [lo, hi) whose cells overlap the source interval [start, start + length)."""
    lo = math.floor(start * target / source)
    hi = math.ceil((start + length) * target / source)
    return max(lo, 0), min(hi, target)


def boxes_to_masks(
    boxes: Mapping[str, Box | None], source_hw: tuple[int, int], frame_size: int
) -> dict[str, np.ndarray]:
    """:func:`box_to_mask` for every named object."""
    return {name: box_to_mask(box, source_hw, frame_size) for name, box in boxes.items()}
