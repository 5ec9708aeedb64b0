"""Data-side tools: offline feature commands and dataset classes for verl (no verl trainer imports)."""
