import os

# Our tests load the plugin through verl's entry point, like a user's process; keep others out.
os.environ.setdefault("VERL_USE_EXTERNAL_PLUGINS", "verl_difficulty")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network, and nothing to report
