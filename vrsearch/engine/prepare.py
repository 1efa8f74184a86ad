"""The data a study's method needs, prepared in one place: the method declares its
needs from its Params (:meth:`vrsearch.registry.MethodSpec.data_needs`), the data
layer indexes, checks and splits accordingly."""

from __future__ import annotations

from vrsearch.core.step import DataNeeds
from vrsearch.data.prepare import PreparedData, prepare_data
from vrsearch.methods import get_method
from vrsearch.study.schema import Study


def data_needs(study: Study) -> DataNeeds:
    """What the study's method reads with the study's params."""
    return get_method(study.method.name).data_needs(study.method.params)


def prepare_for(study: Study, *, check: bool = True) -> PreparedData:
    """The study's dataset indexed, (with ``check``) every file checked, and split for
    its method's needs."""
    return prepare_data(study.dataset, method=study.method.name, needs=data_needs(study), check=check)
