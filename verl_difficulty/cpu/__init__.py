"""Running verl 0.9.1 on a CPU-only machine: everything the quickstart and CI's end-to-end test need.

Off unless asked for. The plugin (in every process that imports verl) only registers names that verl does not
use itself (rows of the extensions table, ``verl_difficulty/verl_glue/patches.py``):

* the ``cpu`` platform (``platform.py``), chosen by ``VERL_PLATFORM=cpu``;
* the ``hf`` rollout backend (``hf_rollout.py``), chosen by ``actor_rollout_ref.rollout.name=hf``.

With ``VERL_PLATFORM=cpu`` it also applies the minimal fixes for verl defects that block a CPU run
(``verl_fixes.py``; each one is also a diff for upstream in patches/). Everything else a CPU run needs is
configuration, set by ``quickstart.py``.
"""
