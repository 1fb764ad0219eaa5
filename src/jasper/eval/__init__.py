"""Evaluation: metrics as pure functions on vectors, task runners, the report."""
