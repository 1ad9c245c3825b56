"""Caffe2's `visualize`: show image tensors (inputs, filters, activations) with matplotlib.

* `ChannelFirst(arr)` / `ChannelLast(arr)`: HWC -> CHW and CHW -> HWC on the last three axes.
* `PatchVisualizer(gap=1)`: draws with `pyplot.imshow` on the current axes and returns the
  array it drew:
  - `ShowSingle(patch)`: one HxW (gray) or HxWx3 (color) patch, or a flat vector of a square
    patch;
  - `ShowMultiple(patches, ncols=None)`: N patches (NxHxW, NxHxWx1, NxHxWx3, or N flat
    vectors) tiled row by row into ceil(N / ncols) rows of `ncols` (default ceil(sqrt(N))),
    `gap` pixels apart; the gaps and the unused tiles are filled with `bg_func(patches)`
    (default the mean);
  - `ShowImages(patches)`: ShowMultiple of the patches scaled to [0, 1];
  - `ShowChannels(patch)`: each channel of one HxWxC patch as its own gray tile.
* `NHWC` and `NCHW`: the same four functions on a default visualizer for tensors in that
  layout (NCHW ones are made channel-last first). Like Caffe2's, they return nothing, so that
  a notebook cell ending with one prints no array.

Gray patches use the `gray` colormap unless `cmap` is given. pyplot picks its backend as
usual (Agg when there is no display); save with `pyplot.savefig`.

Deviations from Caffe2, which failed on these inputs:
* a flat color patch works (Caffe2 reshaped it with float sizes, which numpy refuses);
* an HxWx1 patch is shown as gray by ShowSingle, as ShowMultiple already did (Caffe2 raised,
  so `NCHW.ShowSingle` of a 1xHxW image failed);
* ShowImages takes integer images (Caffe2 divided them in place, which numpy refuses).
"""
from __future__ import annotations

import numpy as np
from matplotlib import pyplot


def ChannelFirst(arr):
    """HWC -> CHW (the last three axes; leading axes stay)."""
    return np.moveaxis(arr, -1, -3)


def ChannelLast(arr):
    """CHW -> HWC (the last three axes; leading axes stay)."""
    return np.moveaxis(arr, -3, -1)


class PatchVisualizer:
    """Draws patches with pyplot; `gap` is the number of pixels between tiles."""

    def __init__(self, gap=1):
        self.gap = gap

    def ShowSingle(self, patch, cmap=None):
        """Show one patch: a square patch flattened to a vector, HxW, HxWx1 or HxWx3."""
        patch = np.asarray(patch)
        if patch.ndim == 1:
            patch = patch.reshape(self.get_patch_shape(patch))
        elif patch.ndim == 3 and patch.shape[2] == 1:
            patch = patch[:, :, 0]
        elif patch.ndim != 2 and (patch.ndim != 3 or patch.shape[2] != 3):
            raise ValueError(f"ShowSingle: a patch is HxW, HxWx1 or HxWx3 (or a flat square "
                             f"patch), got shape {patch.shape}")
        if patch.ndim == 2 and cmap is None:
            cmap = "gray"
        pyplot.imshow(patch, cmap=cmap)
        return patch

    def ShowMultiple(self, patches, ncols=None, cmap=None, bg_func=np.mean):
        """Tile N patches row by row and show the tiling; returns the tiled image."""
        patches = np.asarray(patches)
        count = patches.shape[0]
        if ncols is None:
            ncols = int(np.ceil(np.sqrt(count)))
        nrows = int(np.ceil(count / ncols))
        if patches.ndim == 2:
            patches = patches.reshape((count,) + self.get_patch_shape(patches[0]))
        if patches.ndim == 4:
            if patches.shape[3] == 1:
                patches = patches[..., 0]
            elif patches.shape[3] != 3:
                raise ValueError(f"ShowMultiple: patches are NxHxW, NxHxWx1 or NxHxWx3, got "
                                 f"shape {patches.shape}")
        elif patches.ndim != 3:
            raise ValueError(f"ShowMultiple: patches are NxHxW, NxHxWx1 or NxHxWx3 (or N "
                             f"flat square patches), got shape {patches.shape}")
        if patches.ndim == 3 and cmap is None:
            cmap = "gray"
        step = np.array(patches.shape[1:3]) + self.gap  # one tile plus its gap
        size = step * (nrows, ncols) - self.gap
        image = np.full(tuple(size) + patches.shape[3:], bg_func(patches), dtype=np.float64)
        for i, patch in enumerate(patches):
            top, left = (i // ncols) * step[0], (i % ncols) * step[1]
            image[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
        pyplot.imshow(image, cmap=cmap, interpolation="nearest")
        pyplot.axis("off")
        return image

    def ShowImages(self, patches, *args, **kwargs):
        """ShowMultiple of the patches shifted and scaled to [0, 1]."""
        patches = np.asarray(patches, dtype=np.float64)
        patches = patches - patches.min()
        patches /= patches.max() + np.finfo(np.float64).eps
        return self.ShowMultiple(patches, *args, **kwargs)

    def ShowChannels(self, patch, cmap=None, bg_func=np.mean):
        """Show each channel of an HxWxC patch as a gray tile."""
        patch = np.asarray(patch)
        if patch.ndim != 3:
            raise ValueError(f"ShowChannels: the patch is HxWxC, got shape {patch.shape}")
        return self.ShowMultiple(np.moveaxis(patch, 2, 0), cmap=cmap, bg_func=bg_func)

    def get_patch_shape(self, patch):
        """The shape of a flattened square patch: (n, n) for n*n values, (n, n, 3) for
        3*n*n; ValueError for any other size."""
        side = int(round(np.sqrt(patch.size)))
        if side * side == patch.size:
            return (side, side)
        side = int(round(np.sqrt(patch.size / 3)))
        if 3 * side * side == patch.size:
            return (side, side, 3)
        raise ValueError(f"cannot tell the shape of a flat patch of {patch.size} values: "
                         "neither n*n (gray) nor n*n*3 (color)")


_default_visualizer = PatchVisualizer()


class NHWC:
    """The default visualizer's functions, for HxWxC patches (NxHxWxC for several)."""

    @staticmethod
    def ShowSingle(*args, **kwargs):
        _default_visualizer.ShowSingle(*args, **kwargs)

    @staticmethod
    def ShowMultiple(*args, **kwargs):
        _default_visualizer.ShowMultiple(*args, **kwargs)

    @staticmethod
    def ShowImages(*args, **kwargs):
        _default_visualizer.ShowImages(*args, **kwargs)

    @staticmethod
    def ShowChannels(*args, **kwargs):
        _default_visualizer.ShowChannels(*args, **kwargs)


class NCHW:
    """The default visualizer's functions, for CxHxW patches (NxCxHxW for several)."""

    @staticmethod
    def ShowSingle(patch, *args, **kwargs):
        _default_visualizer.ShowSingle(ChannelLast(np.asarray(patch)), *args, **kwargs)

    @staticmethod
    def ShowMultiple(patch, *args, **kwargs):
        _default_visualizer.ShowMultiple(ChannelLast(np.asarray(patch)), *args, **kwargs)

    @staticmethod
    def ShowImages(patch, *args, **kwargs):
        _default_visualizer.ShowImages(ChannelLast(np.asarray(patch)), *args, **kwargs)

    @staticmethod
    def ShowChannels(patch, *args, **kwargs):
        _default_visualizer.ShowChannels(ChannelLast(np.asarray(patch)), *args, **kwargs)
