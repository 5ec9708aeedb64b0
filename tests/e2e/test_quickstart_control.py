"""The quickstart's run control without verl: the root error of a log, metrics kept across a resume, and the
stopping of a run's whole process tree (signals and the watchdog) on a stand-in tree of sleeping processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from verl_difficulty.cpu import quickstart as qs

# What verl.log holds when a ConfigError ends a run: Ray's wrapper first, the root error at the very end.
RAY_LOG = """\
(TaskRunner pid=123) some progress line
Error executing job with overrides: ['algorithm.adv_estimator=g2rpo']
Traceback (most recent call last):
  File "verl/trainer/main_ppo.py", line 42, in main
    run_ppo(config)
ray.exceptions.RayTaskError(ConfigError): ray::TaskRunnerV1.run() (pid=25127, ip=192.0.2.2, actor_id=cb9d)
  File "verl/trainer/main_ppo.py", line 99, in run
    raise ConfigError(
verl_difficulty.settings.ConfigError: unknown key(s) algorithm.g2rpo.bogus_key; valid keys: mode, \
task_key (see the README's configuration table)

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
"""


def test_root_error_is_the_innermost_exception_not_rays_wrapper(tmp_path):
    lines = RAY_LOG.splitlines()
    index, message = qs.root_error(lines)
    assert lines[index].startswith("verl_difficulty.settings.ConfigError")
    assert message == ("verl_difficulty.settings.ConfigError: unknown key(s) algorithm.g2rpo.bogus_key; "
                       "valid keys: mode, task_key (see the README's configuration table)")
    log = tmp_path / "verl.log"
    log.write_text("earlier segment\nValueError: an old failure, before the resume\n" + RAY_LOG)
    offset = len("earlier segment\nValueError: an old failure, before the resume\n")
    report = qs.failure_report(log, offset)
    assert report.splitlines()[0] == message  # first, whole, and this segment's only
    assert "an old failure" not in report
    assert report.rstrip().endswith("(see the README's configuration table)")  # the excerpt ends at the error


def test_root_error_of_a_worker_line_a_multiline_message_and_no_error():
    lines = ["(WorkerDict pid=77) Traceback (most recent call last):",
             "(WorkerDict pid=77)   File \"x.py\", line 1, in f",
             "(WorkerDict pid=77) RuntimeError: the first line",
             "(WorkerDict pid=77) and its second line",
             "(raylet) a later unrelated line without an error name"]
    assert qs.root_error(lines)[1] == "RuntimeError: the first line and its second line"
    assert qs.root_error(["all fine", "Ray is shutting down"]) is None


def test_resume_keeps_steps_up_to_the_checkpoint(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    qs._write_metrics(metrics, [{"step": 1, "a": 1.0}, {"step": 2, "a": 2.0}])
    segment = tmp_path / "segment.jsonl"  # a killed run's last steps, never merged: step 3 is past the checkpoint
    segment.write_text("".join(json.dumps({"step": s, "data": {"a": s + 0.5}}) + "\n" for s in (2, 3)))
    earlier = qs.merge_metrics(qs.read_metrics(metrics), qs.read_metrics(segment), up_to=2)
    assert earlier == [{"step": 1, "a": 1.0}, {"step": 2, "a": 2.5}]
    resumed = [{"step": 3, "a": 30.0}, {"step": 4, "a": 40.0}]
    assert [m["a"] for m in qs.merge_metrics(earlier, resumed)] == [1.0, 2.5, 30.0, 40.0]


def test_resume_without_a_checkpoint_names_the_fix(tmp_path):
    spec = qs.RunSpec(name="g2rpo", resume=True)
    with pytest.raises(qs.RunFailed, match=r"holds no checkpoint; checkpoints are written with --save-freq N"):
        qs.checkpoint_step(spec, tmp_path / "g2rpo")
    (tmp_path / "g2rpo" / "checkpoints").mkdir(parents=True)
    (tmp_path / "g2rpo" / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("6")
    assert qs.checkpoint_step(spec, tmp_path / "g2rpo") == 6
    assert qs.checkpoint_step(qs.RunSpec(name="x", resume_from="/r/checkpoints/global_step_4"), tmp_path) == 4


# A stand-in for verl + Ray: a driver with a child that ignores SIGTERM and a grandchild in its own session
# (as Ray's workers are), all carrying the run's marker; an unrelated process carries another run's marker.
TREE = """
import os, signal, subprocess, sys, time
if sys.argv[1] == "driver":
    subprocess.Popen([sys.executable, __file__, "stubborn"])
    subprocess.Popen([sys.executable, __file__, "sleeper"], start_new_session=True)
elif sys.argv[1] == "short-lived-driver":  # leaves an agent without the marker behind, in its process group
    env = {k: v for k, v in os.environ.items() if k != "VERL_DIFFICULTY_QUICKSTART_RUN"}
    agent = subprocess.Popen([sys.executable, __file__, "sleeper"], env=env, stdout=subprocess.PIPE, text=True)
    agent.stdout.readline()
    sys.exit(0)
elif sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""

QUICKSTART_STANDIN = """
import subprocess, sys, time
from pathlib import Path
from verl_difficulty.cpu import quickstart as qs
run_id, tree, log = sys.argv[1:4]
watchdog = qs._start_watchdog(run_id, Path(log))
env = qs.run_env(Path(log).parent, run_id)
driver = subprocess.Popen([sys.executable, tree, "driver"], env=env, start_new_session=True)
watchdog.stdin.write(f"pid {driver.pid}\\n")
watchdog.stdin.flush()
print("started", driver.pid, flush=True)
time.sleep(600)
"""


def marked(run_id: str) -> list[psutil.Process]:
    return qs.run_processes(run_id)


def wait_for(predicate, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.fixture
def tree_script(tmp_path) -> Path:
    path = tmp_path / "tree.py"
    path.write_text(TREE)
    return path


@pytest.fixture
def bystander(tree_script):
    """Another run's process: must survive everything below."""
    env = {**os.environ, qs.RUN_MARKER: "someone-else"}
    proc = subprocess.Popen([sys.executable, str(tree_script), "sleeper"], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


def test_stop_run_ends_the_tree_and_only_it(tree_script, bystander):
    run_id = "run-under-test"
    driver = subprocess.Popen([sys.executable, str(tree_script), "driver"], stdout=subprocess.DEVNULL,
                              env={**os.environ, qs.RUN_MARKER: run_id})
    wait_for(lambda: len(marked(run_id)) == 3)
    started = time.monotonic()
    assert qs.stop_run(run_id, psutil.Process(driver.pid), grace_s=1.0) == 3
    assert time.monotonic() - started < 10
    driver.wait(5)
    assert marked(run_id) == [] and bystander.poll() is None


def test_an_unmarked_orphan_in_the_drivers_group_is_found_after_the_driver_exits(tree_script, bystander):
    run_id = "untidy-run"
    driver = subprocess.Popen([sys.executable, str(tree_script), "short-lived-driver"],
                              env={**os.environ, qs.RUN_MARKER: run_id}, start_new_session=True)
    driver.wait(60)
    assert qs.run_processes(run_id) == []  # no marker, no living parent: only its process group gives it away
    orphans = qs.run_processes(run_id, group=driver.pid)
    assert len(orphans) == 1 and qs.RUN_MARKER not in orphans[0].environ()
    assert qs.stop_run(run_id, group=driver.pid, grace_s=1.0) == 1
    assert qs.run_processes(run_id, group=driver.pid) == [] and bystander.poll() is None


def test_a_finished_root_is_not_mistaken_for_a_process_given_its_pid(tree_script):
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    root = psutil.Process(done.pid)
    done.wait()  # reaped: the pid is free for reuse, and must not be signalled again
    assert qs.run_processes("no-such-run", root) == []


def test_watchdog_stops_the_run_when_the_quickstart_is_sigkilled(tree_script, bystander, tmp_path):
    run_id = "killed-run"
    log = tmp_path / "verl.log"
    standin = subprocess.Popen([sys.executable, "-c", QUICKSTART_STANDIN, run_id, str(tree_script), str(log)],
                               stdout=subprocess.PIPE, text=True)
    assert standin.stdout.readline().startswith("started")
    wait_for(lambda: len(marked(run_id)) == 3)  # the driver, its stubborn child, the setsid grandchild
    standin.send_signal(signal.SIGKILL)
    standin.wait()
    # the stubborn one needs the SIGKILL after the grace period; the watchdog logs once all are gone
    wait_for(lambda: log.is_file() and "the quickstart process died; stopped 3 processes" in log.read_text(), 30)
    assert marked(run_id) == []
    assert bystander.poll() is None


def test_watchdog_leaves_a_finished_run_alone(tree_script, tmp_path):
    watchdog = qs._start_watchdog("finished-run", tmp_path / "verl.log")
    watchdog.stdin.write("done\n")
    watchdog.stdin.close()
    assert watchdog.wait(30) == 0
    assert not (tmp_path / "verl.log").exists()
