"""Results: parquet schemas, atomic writers and loaders."""

from vrsearch.results.io import Results, load

__all__ = ["Results", "load"]
