"""Every method file has a spec that names it, and every spec's builder exists.

A spec (``vrsearch/methods/specs/<file>.py``) names its builder as a string and the
implementation is imported only when a trial builds the method, so a wrong name would
otherwise surface only inside a trial. This checks every name without training."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import vrsearch.methods
from vrsearch import registry
from vrsearch.methods import all_methods, specs

#: modules of vrsearch/methods that are not a method: the base class, MONA's stage 1 helper
HELPERS = {"base", "mona_stage1"}


def test_every_builder_is_a_function_of_the_method_file_its_spec_is_named_after():
    for spec in all_methods():
        module, _, function = spec.builder.partition(":")
        assert callable(getattr(importlib.import_module(module), function, None)), spec.builder
        spec_file = Path(importlib.import_module(spec.params.__module__).__file__ or "").stem
        assert module == f"vrsearch.methods.{spec_file}", (spec.name, spec.builder, spec_file)


def test_every_method_file_has_a_spec_and_is_built_by_one():
    files = {m.name for m in pkgutil.iter_modules(vrsearch.methods.__path__) if not m.ispkg} - HELPERS
    spec_files = {m.name for m in pkgutil.iter_modules(specs.__path__)} - {"anatomical"}
    built = {s.builder.partition(":")[0].rsplit(".", 1)[1] for s in all_methods()}
    assert files == spec_files == built, (files, spec_files, built)


@pytest.mark.parametrize(
    "builder", ["vrsearch.methods.dvcl.build_dvcl", "os:system", "vrsearch.methods.dvcl:build dvcl", ""]
)
def test_a_builder_that_is_not_a_methods_function_is_refused(builder):
    with pytest.raises(ValueError, match="builder"):
        registry.register_method("not_registered", params=registry.MethodParams, builder=builder)
    assert "not_registered" not in {s.name for s in all_methods()}
