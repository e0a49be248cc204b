"""Positive-aware hard-negative mining for parallel and monolingual training records (issue 17)."""
