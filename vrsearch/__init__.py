"""vrsearch: hyperparameter searches and ablation studies of semi-supervised
contrastive medical image segmentation methods."""

__version__ = "0.1.0"
