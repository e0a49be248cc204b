"""The evaluation tests' tiny sentence-transformers model, shared with the study tests."""

from tests.unit.evaluation.conftest import tiny_st_model  # noqa: F401  (a pytest fixture)
