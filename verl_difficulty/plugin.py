"""The module named by the ``verl.plugins`` entry point; verl imports it from inside ``import verl``.

verl swallows a plugin's import error at DEBUG level (it would surface much later as "Unknown advantage
estimator"), so everything here is guarded and a failure is logged at WARNING with its cause.
Also usable without entry points: ``VERL_USE_EXTERNAL_MODULES=verl_difficulty.plugin``.
"""

import logging

try:
    from verl_difficulty.verl_glue import install

    install()
except Exception as _error:  # noqa: BLE001 - we must report every failure, whatever its type
    logging.getLogger("verl_difficulty").warning(
        "verl-difficulty failed to load, so its advantage estimators (g2rpo, ...) are NOT registered: %s: %s",
        type(_error).__name__,
        _error,
        exc_info=True,
    )
