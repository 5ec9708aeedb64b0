"""Math scorer under hostile answers: the size screen, the cheap numeric path (checked against math_verify),
the worker pool's hard deadline off the main thread (a heartbeat thread keeps ticking), recovery after a
kill, concurrency, the timeout flag in the extra info, and strict number signs."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_difficulty.rewards import compute_score, score
from verl_difficulty.rewards import math_guard as mg
from verl_difficulty.rewards.math_guard import MathVerifyPool, compare_plain_numbers, screen

BOUND = 1.0  # math_timeout_s used by these tests
MARGIN = 0.5  # kill, pipe and scheduling slack on a busy 2-core machine
MAX_GAP = 0.5  # the largest pause a heartbeat thread may see while a bomb is being scored

# Answers that kept sympy busy for minutes (or never returned) in a worker thread, and more of the same kind.
BOMBS = [
    r"(10^{8})!", r"(x+1)^{10000}", r"9^{9^{9}}", r"2^{2^{2^{2^{2^{2}}}}}", r"10^{10^{10}}", r"(99999)!",
    r"((7^{7})^{7})^{7^{7}}", r"\binom{10^{9}}{10^{8}}", r"10**10**10", r"\left(10^{8}\right)!", r"e^{10^{10}}",
    r"(x+y+z)^{3000}", r"\sqrt{(x+1)^{5000}}", r"3^{3^{3^{3}}}",
]
LEGIT = [
    r"\frac{\sqrt{3}}{2}", r"2^{2024}", r"3^{100}", r"x^2+2x+1", r"(x+1)^2", r"\binom{10}{3}", r"10!", r"20!!",
    r"\sum_{k=1}^{n} k^2", r"e^{i\pi}", r"(1,2)", r"[0, \infty)", r"\{1,2,3\}", r"\sin^2 x + \cos^2 x",
    r"2^{2^{2^{2^{2}}}}", r"\left(\frac{1}{2}\right)^{10}", r"1.5\times10^{6}", r"6.02\times 10^{23}",
    r"(a+b)^{100}", r"x^{2024}", r"e^{-x^2}", r"x \in (0, 1]", r"10^{-9}", r"\int_0^1 x^2 dx", r"2^{10}!",
    r"\lim_{x\to 0}\frac{\sin x}{x}", r"x^{0.5}", r"\pi r^2", r"a_{100}", r"\dfrac{3}{4}", r"\text{yes}", r"x_{1}^{2}",
]


class Heartbeat:
    """A thread that ticks every 10 ms; ``max_gap`` is the longest it was kept from running."""

    def __init__(self):
        self.stop = threading.Event()
        self.max_gap = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        last = time.monotonic()
        while not self.stop.wait(0.01):
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def in_thread(fn, *args, **kwargs):
    """Run fn in a worker thread (as verl's reward loop does); (result, seconds)."""
    with ThreadPoolExecutor(1) as ex:
        t0 = time.monotonic()
        out = ex.submit(fn, *args, **kwargs).result()
        return out, time.monotonic() - t0


def boxed(ans: str) -> str:
    return f"<think>work</think>So the answer is $\\boxed{{{ans}}}$."


@pytest.fixture(scope="module")
def pool():
    p = MathVerifyPool(2)
    assert p.verify("1", "1", 60).acc == 1.0  # start a worker outside the timed calls
    yield p
    p.close()


def warm(p: MathVerifyPool) -> None:
    """Wait until a worker is ready (a kill's replacement is still importing sympy right after a timeout)."""
    assert p.verify(r"\frac{1}{2}", "0.5", 60).acc == 1.0


# ------------------------------------------------------------------------------------------------ screen


@pytest.mark.parametrize("expr", BOMBS)
def test_screen_rejects_bombs(expr):
    why = screen(expr)
    assert why and why.startswith("expression too large"), (expr, why)


@pytest.mark.parametrize("expr", LEGIT)
def test_screen_passes_ordinary_answers(expr):
    assert screen(expr) is None


def test_screen_never_raises_on_junk():
    rng = random.Random(0)
    alphabet = list("0123456789^{}()[]!+-*/_x.,\\ ") + ["\\frac", "\\binom", "\\left", "\\right", "**", "!!"]
    for _ in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert screen(s) is None or screen(s).startswith("expression too large")
    assert screen("{" * 500 + "1" + "}" * 500).startswith("expression too large (nesting")


# ------------------------------------------------------------------------------------------------ cheap path


def _plain(rng: random.Random) -> str:
    k = rng.randrange(5)
    a, b = rng.randint(0, 60), rng.randint(1, 60)
    sign = "-" if rng.random() < 0.2 else ""
    if k == 0:
        return f"{sign}{a}"
    if k == 1:
        return f"{sign}{a / b:.{rng.randint(1, 8)}f}"
    if k == 2:
        return f"{sign}{a}/{b}"
    if k == 3:
        return f"{sign}\\frac{{{a}}}{{{b}}}"
    return f"{sign}{a}.0"


def _value(s: str) -> float:
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("-")
    if s.startswith("\\frac{"):
        num, den = s[len("\\frac{"):-1].split("}{")
        return sign * int(num) / int(den)
    if "/" in s:
        num, den = s.split("/")
        return sign * int(num) / int(den)
    return sign * float(s)


def test_plain_numbers_agree_with_math_verify():
    """Every verdict of the cheap path is the one math_verify gives (run in-process here, main thread)."""
    rng = random.Random(1)
    decided = 0
    for _ in range(150):
        g = _plain(rng)
        p = g if rng.random() < 0.1 else _plain(rng)
        if rng.random() < 0.3:  # float renderings of the gold value, some close enough to need rounding
            p = f"{_value(g):.{rng.randint(1, 9)}f}"
        fast = compare_plain_numbers(g, p)
        if fast is None:
            continue
        decided += 1
        assert fast == (mg._check(g, p)[0] == 1.0), (g, p)
    assert decided > 100
    assert compare_plain_numbers("x", "1") is None and compare_plain_numbers("1/3", "0.3333333") is None


# ------------------------------------------------------------------------------------------------ hard bound


@pytest.mark.parametrize("bomb", [r"(10^{8})!", r"(x+1)^{10000}", r"9^{9^{9}}", r"10^{10^{10}}"])
def test_pool_kills_raw_bombs_within_bound(pool, bomb):
    """The screen bypassed: math_verify really starts on the bomb; the caller still returns by the deadline,
    without holding the GIL, and the pool serves the next call."""
    warm(pool)
    with Heartbeat() as hb:
        verdict, dt = in_thread(pool.verify, bomb, "3", BOUND)
    assert verdict.timed_out and verdict.acc == 0.0 and verdict.reason == mg.TIMEOUT_REASON
    assert dt < BOUND + MARGIN, dt
    assert hb.max_gap < MAX_GAP, hb.max_gap
    assert pool.verify(r"x^2+2x+1", "(x+1)^2", 60) == (1.0, "symbolic match", False)  # recovered


def test_pool_kills_a_stuck_worker_and_replaces_it():
    """Without the worker's own timer (as when sympy is inside one long C call) the worker is killed at the
    deadline, reaped, and replaced; no process is left behind."""
    import psutil

    p = MathVerifyPool(1, self_interrupt=False)
    pids = set()
    try:
        warm(p)
        for bomb in (r"(10^{8})!", r"9^{9^{9}}"):
            pids.add(p._idle[0].proc.pid)
            with Heartbeat() as hb:
                verdict, dt = in_thread(p.verify, bomb, "3", BOUND)
            assert verdict.timed_out and dt < BOUND + MARGIN and hb.max_gap < MAX_GAP, (verdict, dt, hb.max_gap)
            assert p.verify("x^2-1", "(x-1)(x+1)", 60).acc == 1.0  # the replacement answers
        pids.add(p._idle[0].proc.pid)
        assert p.kills == 2 and len(pids) == 3
    finally:
        p.close()
    children = {c.pid for c in psutil.Process().children()}
    assert not pids & children, pids & children  # killed and reaped (no zombies), the last one closed


def test_pool_survives_a_worker_killed_from_outside():
    import os
    import signal

    p = MathVerifyPool(1)
    try:
        warm(p)
        (worker,) = p._idle
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()
        assert p.verify("x^2-1", "(x-1)(x+1)", 60) == (1.0, "symbolic match", False)  # retried on a fresh one
    finally:
        p.close()


@pytest.mark.parametrize("where", ["answer", "ground truth"])
@pytest.mark.parametrize("bomb", [r"(10^{8})!", r"(x+1)^{10000}", r"9^{9^{9}}", r"2^{2^{2^{2^{2}}}}^{2}",
                                  r"10^{10^{10}}", r"(99999)!", r"((2^{10})^{10})^{100000}"])
def test_scorer_bombs_return_in_bound_from_a_worker_thread(bomb, where):
    resp, gt = (boxed(bomb), "3") if where == "answer" else (boxed("3"), bomb)
    with Heartbeat() as hb:
        res, dt = in_thread(score, "math", resp, gt, template="think_boxed", math_timeout_s=BOUND)
    assert res.acc == 0.0 and res.format == 1
    assert "too large" in res.reason or res.reason == "timeout", res.reason
    assert dt < BOUND + MARGIN and hb.max_gap < MAX_GAP, (dt, hb.max_gap)


def test_scorer_timeout_reason_and_flag(monkeypatch, pool):
    """A bomb the screen misses: score 0, reason "timeout", timeout 1 in the extra info (also compute_score)."""
    monkeypatch.setattr(mg, "screen", lambda expr: None)
    monkeypatch.setattr(mg, "get_pool", lambda: pool)
    warm(pool)
    with Heartbeat() as hb:
        res, dt = in_thread(score, "math", boxed(r"(x+1)^{10000}"), "3", template="think_boxed",
                            math_timeout_s=BOUND)
    assert (res.acc, res.reason, res.timeout) == (0.0, "timeout", 1)
    assert res.to_extra_info()["timeout"] == 1
    assert dt < BOUND + MARGIN and hb.max_gap < MAX_GAP, (dt, hb.max_gap)
    warm(pool)
    out = compute_score("geo3k", boxed("3"), r"9^{9^{9}}", None, template="think_boxed", math_timeout_s=BOUND)
    assert out["timeout"] == 1 and out["acc"] == 0.0 and out["reason"] == "timeout"
    ok = compute_score("geo3k", boxed(r"\frac{\sqrt{2}}{2}"), r"\sqrt{2}/2", None, template="think_boxed")
    assert ok["timeout"] == 0 and ok["acc"] == 1.0


def test_normal_answers_concurrent_threads_with_bombs(pool):
    """Eight threads share two workers; bombs time out on their own calls and leave the others right."""
    warm(pool)
    cases = [("x^2+2x+1", "(x+1)^2", 1.0), (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2", 1.0), ("2\\pi", "\\pi+\\pi", 1.0),
             (r"\frac{1}{3}", "0.5", 0.0), ("x^2-1", "(x-1)(x+1)", 1.0), ("x+1", "x+2", 0.0)]
    bombs = {3: r"(x+1)^{10000}", 11: r"(10^{8})!"}

    def job(i):
        if i in bombs:
            t0 = time.monotonic()
            v = pool.verify(bombs[i], "3", BOUND)
            return i, v, time.monotonic() - t0
        g, p, acc = cases[i % len(cases)]
        return i, pool.verify(g, p, 60), acc

    with Heartbeat() as hb, ThreadPoolExecutor(8) as ex:
        results = list(ex.map(job, range(24)))
    for i, v, extra in results:
        if i in bombs:
            assert v.timed_out and extra < BOUND + MARGIN + 0.25, (i, v, extra)  # may queue behind a bomb
        else:
            assert v.acc == extra and not v.timed_out, (i, v)
    assert hb.max_gap < MAX_GAP, hb.max_gap


def test_math_scores_unchanged_and_cheap_paths():
    cases = [(r"\frac{1}{2}", "0.5", 1.0, "numeric match"), ("3", "4", 0.0, "numeric mismatch"),
             ("1/3", "0.3333333", 1.0, "symbolic match"), ("x^2+2x+1", "(x+1)^2", 1.0, "symbolic match"),
             (r"(x+1)^{10000}", r"(x+1)^{10000}", 1.0, "exact match"), ("0.5", "0.500001", 0.0, "symbolic mismatch"),
             # the whole answer counts, not its leading number
             ("2", "2\\pi", 0.0, "symbolic mismatch"), ("3", "3^{10}", 0.0, "symbolic mismatch"),
             ("10", "10^{100}+1", 0.0, "symbolic mismatch"), ("5", "x=5", 1.0, "symbolic match")]
    for gt, ans, acc, reason in cases:
        res, _ = in_thread(score, "math", boxed(ans), gt, template="think_boxed")
        assert (res.acc, res.reason, res.timeout) == (acc, reason, 0), (gt, ans, res)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 601, "3", True])
def test_bad_math_timeout_is_a_config_error(bad):
    with pytest.raises(ValueError, match="math_timeout_s"):
        score("math", boxed("1"), "1", template="think_boxed", math_timeout_s=bad)
    assert score("math", boxed("1"), "1", template="think_boxed", math_timeout_s=None).acc == 1.0


# ------------------------------------------------------------------------------------------------ fuzz

_ATOM = st.sampled_from(["2", "3", "7", "9", "10", "99", "999", "x", "(x+1)", "(x+y)", "e", "\\pi", "12345"])


def _combine(children):
    return st.one_of(
        st.tuples(children, children).map(lambda t: f"{t[0]}^{{{t[1]}}}"),
        st.tuples(children, children).map(lambda t: f"{t[0]}**{t[1]}"),
        children.map(lambda c: f"({c})!"),
        children.map(lambda c: f"\\left({c}\\right)!"),
        st.tuples(children, children).map(lambda t: f"\\binom{{{t[0]}}}{{{t[1]}}}"),
        st.tuples(children, children).map(lambda t: f"{t[0]}+{t[1]}"),
        st.tuples(children, children).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
    )


_EXPR = st.recursive(_ATOM, _combine, max_leaves=6)


def test_fuzz_math_bombs_bounded_from_a_worker_thread(pool, monkeypatch):
    """Random towers, factorials, binomials and powers of sums, as answer and as ground truth: every call
    returns within the bound (plus a worker's restart when the previous call killed one) and never raises."""
    monkeypatch.setattr(mg, "get_pool", lambda: pool)
    worst = {"dt": 0.0, "gap": 0.0}

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_EXPR, _EXPR, st.booleans())
    def run(a, b, swap):
        gt, ans = (a, b) if not swap else (b, a)
        with Heartbeat() as hb:
            res, dt = in_thread(score, "math", boxed(ans), gt, template="think_boxed", math_timeout_s=BOUND)
        info = res.to_extra_info()
        assert 0.0 <= info["acc"] <= 1.0 and info["timeout"] in (0, 1)
        assert dt < BOUND + MARGIN + mg.STARTUP_TIMEOUT_S
        worst["dt"], worst["gap"] = max(worst["dt"], dt), max(worst["gap"], hb.max_gap)
        assert hb.max_gap < MAX_GAP, hb.max_gap

    run()
    print("fuzz worst call", worst)


# ------------------------------------------------------------------------------------------------ number signs


@pytest.mark.parametrize("task", ["numerical", "regression", "counting"])
@pytest.mark.parametrize("answer", ["--5", "5-", "+-5", "5 -", "- -5", "A-5", "the value is 5-"])
def test_stray_signs_are_refused(task, answer):
    res = score(task, f"<think>t</think><answer>{answer}</answer>", 5 if task == "counting" else -5)
    assert res.acc == 0.0 and "stray sign" in res.reason, (answer, res)


@pytest.mark.parametrize("answer, value", [("-5", -5), ("The value is -5.", -5), ("x = -5", -5), ("\u22125", -5),
                                          ("+5", 5), ("1e-5", 1e-5), ("It is 1e-5 m", 1e-5)])
def test_signed_numbers_still_parse(answer, value):
    res = score("numerical", f"<think>t</think><answer>{answer}</answer>", value, rel_tol=1e-9)
    assert res.acc == 1.0, (answer, res)
