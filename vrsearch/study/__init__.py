"""Study files: schema, loading, validation."""

from vrsearch.study.load import StudyError, build_study, load_study, study_to_yaml
from vrsearch.study.schema import Study

__all__ = ["Study", "StudyError", "build_study", "load_study", "study_to_yaml"]
