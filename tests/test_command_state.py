"""A command's state (attrobust/command_state.py) and a job's start (rundir.Job): nothing is shared between commands
in one process, and a job's snapshot is written once, when its work begins."""

from __future__ import annotations

from pathlib import Path

from attrobust import command_state
from attrobust.rundir import Job


def test_each_command_has_its_own_state_and_none_outlives_it():
    assert command_state.current() is None
    with command_state.opened() as first:
        first.failures.append("job 0: bad")
        assert command_state.current() is first
        with command_state.opened() as inner:  # a command run from inside another (a notebook cell, a test)
            assert command_state.current() is inner and inner.failures == []
        assert command_state.current() is first
    assert command_state.current() is None
    with command_state.opened() as second:
        assert second.failures == [] and second.finished_sweeps == [] and second.created_above == {}


def test_a_job_writes_its_snapshot_once_when_its_work_begins(tmp_path: Path):
    written = []
    job = Job(tmp_path, on_start=lambda: written.append(1))
    assert not job.started and written == []
    job.mark_started()
    job.mark_started()
    assert job.started and written == [1]


def test_a_failing_command_does_not_fail_the_next_one_in_the_same_process(cli, tmp_path):
    bad = cli("train", "dataset=nonesuch")
    assert bad.exit_code == 2 and "unknown dataset 'nonesuch'" in bad.stderr
    listed = cli("train", "+experiment=mnist_mini_natural", "--cfg", "job")
    assert listed.exit_code == 0, listed.stderr
