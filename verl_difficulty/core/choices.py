"""The named choices of the core estimators, importable without torch (the settings layer validates against
them in processes that never load torch, such as a reward worker)."""

G2RPO_MODES = ("two_stage", "single_stage")
PERCEPTUAL_BUCKET_RULES = ("closed_quantile", "half_open_rank")
