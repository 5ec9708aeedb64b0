"""verl-difficulty: difficulty- and task-aware advantage estimators for verl."""

__version__ = "0.1.0"
