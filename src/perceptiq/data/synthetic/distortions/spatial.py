"""Spatial distortions (KADID-10k group "spatial distortions"): jitter, non-eccentricity
patch, pixelate, quantisation, colour block.

Inputs and outputs are sRGB (H, W, 3) float32 in [0, 1]. The two patch distortions
work on a grid of square cells whose side is a fixed fraction of the shorter image
side (so they look alike at every resolution); a level chooses how many cells are hit,
and the cells of a lower level are always a subset of those of a higher level.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def jitter(img: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Move every pixel by an independent random offset of up to ``amplitude`` px per axis.

    Sampling is bilinear with mirrored borders; the unit offsets are drawn before
    scaling so all levels of one image share the same displacement pattern.
    """
    height, width = img.shape[:2]
    unit = rng.uniform(-1.0, 1.0, size=(2, height, width))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coords = np.stack([rows + amplitude * unit[0], cols + amplitude * unit[1]])
    return np.stack(
        [ndimage.map_coordinates(img[..., c], coords, order=1, mode="reflect") for c in range(3)],
        axis=-1,
    ).astype(np.float32)


def cell_grid(shape: tuple[int, ...], cell_fraction: float) -> tuple[int, int, int]:
    """(cell side px, grid rows, grid cols) for an (H, W, ...) image; at least 2 px per cell."""
    cell = max(2, int(round(min(shape[:2]) * cell_fraction)))
    return cell, shape[0] // cell, shape[1] // cell


def chosen_cells(n_cells: int, fraction: float, order: np.ndarray) -> np.ndarray:
    """The first round(fraction * n_cells) (at least one) cells of a random ``order``."""
    count = min(n_cells, max(1, int(round(fraction * n_cells))))
    return order[:count]


def non_eccentricity_patch(
    img: np.ndarray, fraction: float, rng: np.random.Generator, *, cell_fraction: float
) -> np.ndarray:
    """Replace a ``fraction`` of grid cells by the content of a nearby cell-sized patch.

    The source of each cell lies 1 to 2 cell sides away in a random direction
    (reflected back inside the frame when it would leave it), so the copied
    content is locally plausible but misplaced.
    """
    cell, grid_rows, grid_cols = cell_grid(img.shape, cell_fraction)
    n_cells = grid_rows * grid_cols
    order = rng.permutation(n_cells)
    angles = rng.uniform(0.0, 2.0 * np.pi, n_cells)
    distances = rng.uniform(1.0, 2.0, n_cells) * cell
    out = img.copy()
    height, width = img.shape[:2]
    for index in chosen_cells(n_cells, fraction, order):
        top, left = (index // grid_cols) * cell, (index % grid_cols) * cell
        src_top = reflect_inside(top, int(round(distances[index] * np.sin(angles[index]))), height - cell)
        src_left = reflect_inside(left, int(round(distances[index] * np.cos(angles[index]))), width - cell)
        out[top : top + cell, left : left + cell] = img[src_top : src_top + cell, src_left : src_left + cell]
    return out


def reflect_inside(start: int, offset: int, last: int) -> int:
    """``start + offset`` if within [0, last], else ``start - offset`` clipped into [0, last]."""
    moved = start + offset
    if 0 <= moved <= last:
        return moved
    return int(np.clip(start - offset, 0, last))


def colour_block(img: np.ndarray, fraction: float, rng: np.random.Generator, *, cell_fraction: float) -> np.ndarray:
    """Paint a ``fraction`` of grid cells with a flat random colour (uniform in RGB)."""
    cell, grid_rows, grid_cols = cell_grid(img.shape, cell_fraction)
    n_cells = grid_rows * grid_cols
    order = rng.permutation(n_cells)
    colours = rng.random((n_cells, 3)).astype(np.float32)
    out = img.copy()
    for index in chosen_cells(n_cells, fraction, order):
        top, left = (index // grid_cols) * cell, (index % grid_cols) * cell
        out[top : top + cell, left : left + cell] = colours[index]
    return out


def pixelate(img: np.ndarray, block: float, rng: np.random.Generator) -> np.ndarray:
    """Replace each ``block`` x ``block`` tile by its mean colour (edge tiles padded by replication)."""
    size = int(block)
    height, width = img.shape[:2]
    pad_h, pad_w = -height % size, -width % size
    padded = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    tiles = padded.reshape(padded.shape[0] // size, size, padded.shape[1] // size, size, 3).mean(axis=(1, 3))
    blocky = np.repeat(np.repeat(tiles, size, axis=0), size, axis=1)
    return blocky[:height, :width].astype(np.float32)


def quantisation(img: np.ndarray, steps: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform quantisation of each channel to ``steps`` evenly spaced values in [0, 1] (banding)."""
    top = int(steps) - 1
    return (np.rint(np.clip(img, 0.0, 1.0) * top) / top).astype(np.float32)
