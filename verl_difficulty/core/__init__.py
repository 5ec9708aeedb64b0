"""Pure math: no verl import, no config objects, no I/O."""
