"""Runnable examples and the test harnesses they share with tests/ and benchmarks/ (not part of the package).

    python examples/demo.py          G²RPO beside verl's grpo_vectorized, through verl's own advantage code

``synthetic.py`` builds verl-shaped GRPO batches; ``local_v1.py`` runs verl's v1 advantage step on a local Ray +
TransferQueue. Tests and benchmarks import them as ``examples.<module>`` (tests/conftest.py and the benchmarks
put the checkout on ``sys.path``).
"""
