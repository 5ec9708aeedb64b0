"""Bounded math equivalence for the math scorer: a size screen, a cheap numeric path, and math_verify run in a
small pool of worker processes with a hard wall-clock deadline.

Why a process: math_verify's own timeout is ``signal.alarm``, which only works in the main thread, and verl
runs reward functions in executor threads. There a short answer such as ``(10^{8})!`` or ``(x+1)^{10000}``
keeps sympy busy for minutes while holding the GIL, stalling every thread of the reward worker. Here the
caller waits on a pipe (GIL released). The worker's own timer interrupts Python-level work just before the
deadline; a worker still busy at the deadline (inside one long C call) is killed and replaced at once.

The workers are plain subprocesses (``sys.executable``), not ``multiprocessing`` children: no fork of a
threaded parent (Ray actors, asyncio executors) and no re-import of the parent's ``__main__``. This module
imports only the standard library so a worker can load it by file path without importing the package.

Bound per call: ``timeout_s`` (waiting for a free worker included), plus a worker's start-up (importing
sympy, at most ``STARTUP_TIMEOUT_S``) when the pool has no ready worker: the first call of a process, or
every worker just killed.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from multiprocessing.connection import Connection
from typing import NamedTuple

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_DIGITS",
    "MAX_POLY_EXPONENT",
    "MAX_SYMBOL_EXPONENT",
    "TIMEOUT_REASON",
    "MathVerifyPool",
    "Verdict",
    "compare_plain_numbers",
    "get_pool",
    "math_verify_available",
    "screen",
    "verify_bounded",
]

DEFAULT_TIMEOUT_S = 3.0
STARTUP_TIMEOUT_S = 60.0
TIMEOUT_REASON = "timeout"
# Screen limits: decimal digits of a numeric subexpression, exponents of symbolic bases. Numbers of 10^5 digits
# and x^(10^4) are cheap for sympy; a power of a sum is expanded term by term, so its exponent is kept far lower.
MAX_DIGITS = 100_000
MAX_POLY_EXPONENT = 200
MAX_SYMBOL_EXPONENT = 10_000
MAX_NESTING = 60
_LOG10_2 = math.log10(2.0)
_log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------------
# Size screen: an upper bound on the magnitude of every numeric subexpression, before any parsing by sympy
# ------------------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+|\\[a-zA-Z]+|\\.|\*\*|!!?|\s+|.", re.DOTALL)
_SKIP = frozenset({"\\left", "\\right", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\displaystyle", "\\,", "\\;",
                   "\\!", "\\ ", "\\quad", "\\qquad", "\\mathrm", "\\text", "\\mathbf", "\\operatorname"})
_OPEN = {"{": "}", "(": ")", "[": "]"}
_CLOSE = frozenset("})]")
_PRODUCT_OPS = frozenset({"*", "/", "\\cdot", "\\times", "\\div"})
_SUM_OPS = frozenset({"+", "-"})


class _TooLarge(Exception):
    pass


class _Val:
    """A subexpression: ``digits`` bounds log10 of its magnitude (and of its reciprocal) when it is numeric;
    None when it holds a symbol. ``compound``: a sum or a function of something, whose powers sympy expands."""

    __slots__ = ("digits", "compound")

    def __init__(self, digits: float | None, compound: bool = False):
        self.digits = digits
        self.compound = compound


def _number_digits(tok: str) -> float:
    """log10 of a literal's magnitude, 0 below 1."""
    if len(tok) > 300:
        return float(len(tok))
    v = float(tok)
    return math.log10(v) if v > 1 else 0.0


def _exp10(d: float) -> float:
    return math.inf if d > 300 else 10.0 ** d


class _Screen:
    """Recursive descent over a loose LaTeX grammar; unknown tokens are symbols or separators, never errors."""

    def __init__(self, tokens: list[str]):
        self.toks = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def check(self, v: _Val) -> _Val:
        if v.digits is not None and v.digits > MAX_DIGITS:
            raise _TooLarge(f"a number with more than {MAX_DIGITS} digits")
        return v

    def expr(self, close: str | None) -> _Val:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _TooLarge(f"nesting deeper than {MAX_NESTING}")
        acc: _Val | None = None
        op = None
        while (tok := self.peek()) is not None:
            if tok in _CLOSE:
                if tok == close:
                    self.i += 1
                    break
                self.i += 1  # a stray closer: ignore
                continue
            if tok in _SKIP:
                self.i += 1
                continue
            if tok in _SUM_OPS or tok in _PRODUCT_OPS or not _starts_term(tok):
                self.i += 1
                op = tok
                continue
            term = self.postfix(self.power())
            acc = term if acc is None else self.combine(acc, op, term)
            op = None
        self.depth -= 1
        return acc if acc is not None else _Val(0.0)

    def combine(self, a: _Val, op: str | None, b: _Val) -> _Val:
        if a.digits is None or b.digits is None:
            return _Val(None, compound=op in _SUM_OPS or a.compound or b.compound)
        if op in _SUM_OPS:
            return self.check(_Val(max(a.digits, b.digits) + _LOG10_2))
        if op is None or op in _PRODUCT_OPS:  # juxtaposition is a product
            return self.check(_Val(a.digits + b.digits))
        return _Val(max(a.digits, b.digits))  # separators (",", "=", "<"): independent parts

    def power(self) -> _Val:
        base = self.atom()
        while True:
            tok = self.peek()
            if tok == "_":  # an index (\sum_{k=1}, x_{10}) is not computed
                self.i += 1
                self.atom()
            elif tok in ("^", "**"):  # right-associative, as 10**10**10
                self.i += 1
                braced = self.peek() == "{"
                exp = self.power()
                # 2^{10}! is (2^{10})!; for a bare 2^3! the exponent takes the factorial (the larger reading)
                return self.raise_to(base, exp if braced else self.postfix(exp))
            else:
                return base

    def raise_to(self, base: _Val, exp: _Val) -> _Val:
        if exp.digits is None:
            return _Val(None, compound=True)
        e = _exp10(exp.digits)
        if base.digits is None:
            if base.compound and e > MAX_POLY_EXPONENT:
                raise _TooLarge(f"a power of a sum or function with exponent above {MAX_POLY_EXPONENT}")
            if e > MAX_SYMBOL_EXPONENT:
                raise _TooLarge(f"a power with exponent above {MAX_SYMBOL_EXPONENT}")
            return _Val(None, compound=base.compound)
        return self.check(_Val(0.0 if base.digits == 0 else base.digits * e))

    def postfix(self, v: _Val) -> _Val:
        while self.peek() in ("!", "!!"):
            self.i += 1
            if v.digits is not None:
                n = _exp10(v.digits)
                v = self.check(_Val(n * max(math.log10(n), 1.0) if n > 1 else 0.0))
        return v

    def atom(self) -> _Val:
        while (tok := self.peek()) is not None and (tok in _SKIP or tok.isspace()):
            self.i += 1
        if tok is None or tok in _CLOSE:
            return _Val(0.0)
        self.i += 1
        if tok in _OPEN:
            inner = self.expr(_OPEN[tok])
            return inner
        if tok[0].isdigit() or tok[0] == ".":
            return self.check(_Val(_number_digits(tok)))
        if tok in ("\\frac", "\\dfrac", "\\tfrac"):
            a, b = self.atom(), self.atom()
            return self.combine(a, "/", b)
        if tok == "\\binom":
            n, k = self.atom(), self.atom()
            if n.digits is None or k.digits is None:
                return _Val(None, compound=True)
            return self.check(_Val(_exp10(n.digits) * _LOG10_2))  # C(n, k) <= 2^n
        if tok == "\\sqrt":
            if self.peek() == "[":
                self.i += 1
                self.expr("]")
            return self.atom()
        if tok.startswith("\\") and len(tok) > 2:  # \pi, \alpha, \sin, \sum, \infty ...
            return _Val(None, compound=tok not in _SYMBOLS)
        return _Val(None)  # a letter or other symbol


_SYMBOLS = frozenset({"\\pi", "\\alpha", "\\beta", "\\gamma", "\\delta", "\\theta", "\\lambda", "\\mu", "\\sigma",
                      "\\omega", "\\phi", "\\varphi", "\\epsilon", "\\varepsilon", "\\tau", "\\rho", "\\eta",
                      "\\xi", "\\zeta", "\\nu", "\\kappa", "\\psi", "\\chi", "\\infty", "\\e"})


def _starts_term(tok: str) -> bool:
    return tok[0].isalnum() or (tok[0] in "{([\\" and tok != "\\\\")


def screen(expr: str) -> str | None:
    """Why ``expr`` is too large for a symbolic check (a reason), or None. Conservative upper bounds on the
    size of numeric powers, factorials and binomials; exponents of symbolic bases (powers of sums are
    expanded by sympy); nesting depth. Never raises."""
    try:
        tokens = [t for t in _TOKEN_RE.findall(expr) if not t.isspace()]
        _Screen(tokens).expr(None)
    except _TooLarge as e:
        return f"expression too large ({e})"
    except RecursionError:
        return f"expression too large (nesting deeper than {MAX_NESTING})"
    except Exception:  # noqa: BLE001 - the screen is an optimisation; the deadline still bounds the call
        return None
    return None


# ------------------------------------------------------------------------------------------------------------
# Cheap path: plain numbers decided without math_verify, with math_verify's own rules
# ------------------------------------------------------------------------------------------------------------

_PLAIN_RE = re.compile(
    r"(-?)(?:(\d{1,15})|(\d{1,15}\.\d{1,15})|(\d{1,15})/(\d{1,15})|\\frac\{(\d{1,15})\}\{(\d{1,15})\})")
# math_verify rounds both sides to 6 decimals when one is a float: values farther apart than this differ
_FLOAT_GAP = Fraction(2, 10**6)


def _plain_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_float) for a normalised plain number (integer, decimal, a/b, \\frac{a}{b}), else None."""
    m = _PLAIN_RE.fullmatch(s)
    if m is None:
        return None
    sign, integer, decimal, num, den, fnum, fden = m.groups()
    if integer is not None:
        v, is_float = Fraction(int(integer)), False
    elif decimal is not None:
        if len(decimal) > 16:  # more than 15 significant digits: leave float precision to math_verify
            return None
        v, is_float = Fraction(decimal), True
    else:
        n, d = (num, den) if num is not None else (fnum, fden)
        if int(d) == 0:
            return None
        v, is_float = Fraction(int(n), int(d)), False
    return (-v if sign else v), is_float


def compare_plain_numbers(gold: str, pred: str) -> bool | None:
    """math_verify's verdict for two plain numbers (normalised strings) when it is certain, else None: exact
    values compare exactly; with a decimal on either side equal values match and values more than 2e-6 apart
    do not (math_verify compares floats after rounding to 6 decimals, so closer pairs are left to it)."""
    g, p = _plain_number(gold), _plain_number(pred)
    if g is None or p is None:
        return None
    if g[0] == p[0]:
        return True
    if not (g[1] or p[1]) or abs(g[0] - p[0]) > _FLOAT_GAP:
        return False
    return None


# ------------------------------------------------------------------------------------------------------------
# Worker process
# ------------------------------------------------------------------------------------------------------------


class _SoftTimeout(BaseException):
    """Raised by the worker's own timer; a BaseException so sympy's ``except Exception`` cannot swallow it."""


def _check(gold_text: str, pred_text: str) -> tuple[float, str]:
    from math_verify import parse, verify

    gold = parse(f"${gold_text}$", parsing_timeout=None) or parse(gold_text, parsing_timeout=None)
    pred = parse(pred_text, parsing_timeout=None)
    # a raw parse keeps a leading number and drops the rest ("2\pi" -> 2, "3^{10}" -> 3): read the answer as
    # LaTeX unless the raw parse took all of it (a decimal then stays a float, compared after rounding)
    if "$" not in pred_text and not (pred and str(pred[-1]).strip() == pred_text.strip()):
        pred = parse(f"${pred_text}$", parsing_timeout=None) or pred
    if not gold or not pred:
        return 0.0, "mismatch (math_verify could not parse; exact match only)"
    ok = verify(gold, pred, timeout_seconds=None)
    return (1.0, "symbolic match") if ok else (0.0, "symbolic mismatch")


def _soft_timeout_handler(signum, frame):
    raise _SoftTimeout


def _worker_main(read_fd: int, write_fd: int) -> None:
    """Serve (gold, pred, seconds) requests until the parent closes the pipe. A request that outlives its
    seconds is interrupted by SIGALRM when Python code runs again; the parent kills the worker when not."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" warnings: we bound it here
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    signal.signal(signal.SIGALRM, _soft_timeout_handler)
    try:
        _check("1", "1")  # warm sympy's parser before taking requests
    except Exception:  # noqa: BLE001
        pass
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            gold, pred, seconds = inbox.recv()
        except (EOFError, OSError):
            return
        try:
            signal.setitimer(signal.ITIMER_REAL, max(0.01, seconds))
            try:
                out = _check(gold, pred)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _SoftTimeout:
            out = (0.0, TIMEOUT_REASON)
        except Exception as e:  # noqa: BLE001
            out = (0.0, f"mismatch (math_verify error: {type(e).__name__})")
        outbox.send(out)


# Loads this file by path under a private name: the worker needs neither the package nor the parent's main.
_BOOT = (
    "import sys, importlib.util as u\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
    "s = u.spec_from_file_location('_verl_difficulty_math_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
    "m._worker_main(int(sys.argv[2]), int(sys.argv[3]))\n"
)


class _Worker:
    def __init__(self):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            # close_fds (default) + pass_fds: the child inherits only its two pipe ends
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, os.path.abspath(__file__), str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, close_fds=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        except BaseException:
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
            raise
        os.close(to_child_r)
        os.close(from_child_w)
        self.send_conn = Connection(to_child_w, readable=False)
        self.recv_conn = Connection(from_child_r, writable=False)
        self.ready = False

    def wait_ready(self, deadline: float) -> bool:
        if not self.ready:
            if not self.recv_conn.poll(max(0.0, deadline - time.monotonic())):
                return False
            msg = self.recv_conn.recv()
            self.ready = isinstance(msg, tuple) and msg[:1] == ("ready",)
        return self.ready

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass
        for conn in (self.send_conn, self.recv_conn):
            try:
                conn.close()
            except OSError:
                pass


class Verdict(NamedTuple):
    acc: float
    reason: str
    timed_out: bool = False


class MathVerifyPool:
    """Up to ``max_workers`` math_verify processes shared by the threads of this process. ``verify`` blocks
    the calling thread only on pipes and locks (GIL released) and returns by its deadline."""

    def __init__(self, max_workers: int, *, self_interrupt: bool = True):
        self.max_workers = max(1, int(max_workers))
        # a worker's own timer stops Python-level work just before the deadline, sparing a kill and a restart;
        # off, every overrun is killed (the path taken when the worker is stuck in C code)
        self.self_interrupt = self_interrupt
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._alive = 0
        self._ready = 0
        self._closed = False
        self.kills = 0  # workers discarded: killed at a deadline (stuck in C code) or found dead

    def _acquire(self, deadline: float) -> _Worker | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._idle:
                    return self._idle.pop()
                if self._alive < self.max_workers:
                    self._alive += 1
                    break
                # waiting on busy workers counts against the deadline, unless none has started yet
                limit = deadline if self._ready else deadline + STARTUP_TIMEOUT_S
                left = limit - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
        try:
            return _Worker()
        except Exception:
            with self._cond:
                self._alive -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed:
                worker.kill()
                return
            self._idle.append(worker)
            self._cond.notify()

    def _discard(self, worker: _Worker) -> None:
        """Kill a worker and start its replacement now, so that it is importing sympy before it is needed."""
        was_ready = worker.ready
        worker.kill()
        with self._cond:
            self.kills += 1
            self._ready -= int(was_ready)
            if self._closed:
                self._alive -= 1
                return
        try:
            fresh = _Worker()
        except Exception:  # noqa: BLE001 - the next _acquire tries again
            with self._cond:
                self._alive -= 1
                self._cond.notify()
            return
        self._release(fresh)

    def verify(self, gold: str, pred: str, timeout_s: float) -> Verdict:
        deadline = time.monotonic() + timeout_s
        for _ in range(2):  # a second try only when an idle worker had died (killed from outside, OOM)
            worker = self._acquire(deadline)
            if worker is None:
                return Verdict(0.0, TIMEOUT_REASON + " (no free math worker)", True)
            verdict, deadline = self._ask(worker, gold, pred, deadline, timeout_s)
            if verdict is not None:
                return verdict
        return Verdict(0.0, "mismatch (math worker died; exact match only)")

    def _ask(self, worker: _Worker, gold: str, pred: str, deadline: float,
             timeout_s: float) -> tuple[Verdict | None, float]:
        """(verdict, deadline), or (None, deadline) when the worker was dead before it got the request."""
        keep = False
        try:
            if not worker.ready:
                if not worker.wait_ready(time.monotonic() + STARTUP_TIMEOUT_S):
                    _log.warning("math_verify worker (%s) not ready after %.0f s; scoring exact match only",
                                 sys.executable, STARTUP_TIMEOUT_S)
                    return Verdict(0.0, "mismatch (math worker failed to start; exact match only)"), deadline
                with self._cond:
                    self._ready += 1
                deadline = max(deadline, time.monotonic() + timeout_s)  # the start-up is not the answer's time
            left = deadline - time.monotonic()
            if left <= 0:
                keep = True
                return Verdict(0.0, TIMEOUT_REASON, True), deadline
            if worker.proc.poll() is not None:
                return None, deadline
            own = max(0.01, left - min(0.25, left / 4)) if self.self_interrupt else left + STARTUP_TIMEOUT_S
            try:
                worker.send_conn.send((gold, pred, own))
            except OSError:
                return None, deadline
            if not worker.recv_conn.poll(max(0.0, deadline - time.monotonic())):
                return Verdict(0.0, TIMEOUT_REASON, True), deadline
            acc, reason = worker.recv_conn.recv()
            keep = True
            return Verdict(float(acc), str(reason), reason == TIMEOUT_REASON), deadline
        except (EOFError, OSError):  # it died on this request (a crash in sympy, out of memory)
            _log.warning("math_verify worker %s exited (code %s)%s", worker.proc.pid, worker.proc.poll(),
                         "" if worker.ready else f" while starting: check that {sys.executable} imports math_verify")
            return Verdict(0.0, "mismatch (math worker died; exact match only)"), deadline
        finally:
            if keep:
                self._release(worker)
            else:
                self._discard(worker)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for w in idle:
            w.kill()


_POOL: MathVerifyPool | None = None
_POOL_LOCK = threading.Lock()
_POOL_PID = -1


def _default_workers() -> int:
    env = os.environ.get("VERL_DIFFICULTY_MATH_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def get_pool() -> MathVerifyPool:
    """This process's pool (a forked child gets its own: pipes to the parent's workers are not shared)."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL, _POOL_PID = MathVerifyPool(_default_workers()), os.getpid()
        return _POOL


def _forget_pool_in_child() -> None:
    """A child forked while another thread held the lock must not inherit it locked."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


@atexit.register
def _close_pool() -> None:
    if _POOL is not None and _POOL_PID == os.getpid():
        _POOL.close()


_MV_AVAILABLE: bool | None = None


def math_verify_available() -> bool:
    global _MV_AVAILABLE
    if _MV_AVAILABLE is None:
        _MV_AVAILABLE = importlib.util.find_spec("math_verify") is not None
    return _MV_AVAILABLE


def verify_bounded(gold: str, pred: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """math_verify's verdict on (gold, pred) within ``timeout_s`` seconds of wall clock, from any thread.
    Expressions too large for a symbolic check (``screen``) score 0 without parsing."""
    why = screen(gold)
    if why:
        return Verdict(0.0, f"ground truth {why}")
    why = screen(pred)
    if why:
        return Verdict(0.0, f"answer {why}")
    return get_pool().verify(gold, pred, timeout_s)
