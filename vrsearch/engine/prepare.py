"""The data a study's method needs, prepared in one place: the method declares its
needs from its Params (:meth:`vrsearch.registry.MethodSpec.data_needs`), the data
layer indexes, checks and splits accordingly."""

from __future__ import annotations

import os
from pathlib import Path

from vrsearch.core.step import DataNeeds
from vrsearch.data.prepare import PreparedData, prepare_data
from vrsearch.data.prepared import PreparedStore
from vrsearch.methods import get_method
from vrsearch.results.rundir import RunDir
from vrsearch.study.schema import Study


def data_needs(study: Study) -> DataNeeds:
    """What the study's method reads with the study's params."""
    return get_method(study.method.name).data_needs(study.method.params)


def prepare_for(study: Study, *, check: bool = True) -> PreparedData:
    """The study's dataset indexed, (with ``check``) every file checked, and split for
    its method's needs."""
    return prepare_data(study.dataset, method=study.method.name, needs=data_needs(study), check=check)


#: where the prepared-data cache lives (default: ``<run dir>/cache``); ``off``: no cache
CACHE_ENV = "VRSEARCH_CACHE_DIR"


def prepared_store(study: Study) -> PreparedStore | None:
    """The prepared-data cache a trial of ``study`` reads (:mod:`vrsearch.data.prepared`):
    ``$VRSEARCH_CACHE_DIR`` if set (``off``: none, every trial decodes its files), else the
    run directory's ``cache/``. It is local to each node and never mirrored to
    ``output.storage``: on a cluster every node builds its own copy on first use."""
    where = os.environ.get(CACHE_ENV, "")
    if where == "off":
        return None
    return PreparedStore(Path(where).expanduser() if where else RunDir(study.run_dir).cache)
