"""The Python side of the recipes in ``recipes/<paper>/run.sh`` (contract: recipes/README.md).

``dry_run``: verl's entry point up to Ray start plus the plugin's start-up checks (``DRY_RUN=1``);
``rehearsal``: the CPU training step of ``REHEARSAL=cpu``; ``fixtures``: small inputs in each source's
published format; ``merge``: the last checkpoint into a Hugging Face folder (verl's model merger).
"""
