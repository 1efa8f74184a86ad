"""Networks: MONAI backbones with segmentation and feature heads."""

from vrsearch.models.nets import SegNet, build_segnet

__all__ = ["SegNet", "build_segnet"]
