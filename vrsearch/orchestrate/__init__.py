"""Ray orchestration: the only package that imports ``ray``."""
