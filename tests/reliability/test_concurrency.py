"""Two runs on one folder: a second predict_folder into the same output folder, a second auto on the same work
folder. The second is refused (exit 2, naming the folder and the PID of the run holding it) and changes nothing;
the first finishes with the same output as a run alone. The first run is a real process, stopped (SIGSTOP) just
after it published a file, so the second always meets it mid-way."""

import os
import re
import signal

import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.utils.lock import LOCK_NAME, folder_lock
from tests.reliability.artifacts import check_complete
from tests.reliability.harness import RenameKill, differences, output_digest, start_stopped
from tests.reliability.test_bad_input import snapshot


def _refused(argv, folder, pid, capsys) -> None:
    before = snapshot(folder)
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"error: {re.escape(str(folder))}: another orthodiff run \(PID {pid}\) is writing into this "
                     "folder", err), err
    assert snapshot(folder) == before


@pytest.mark.slow
def test_second_predict_folder_into_the_same_folder_is_refused(suite, tmp_path, capsys):
    scenario = suite.scenarios["predict_folder"]
    first = start_stopped(scenario.args(tmp_path), RenameKill("thresholds.json", 1, "after"))
    try:
        _refused(scenario.args(tmp_path), tmp_path / "out", first.pid, capsys)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0
    assert not differences(suite.reference("predict_folder").digest,
                           output_digest(tmp_path / "out", suite.inputs.root))


@pytest.mark.slow
def test_second_auto_on_the_same_work_folder_is_refused(suite, tmp_path, capsys):
    scenario = suite.scenarios["auto"]
    first = start_stopped(scenario.args(tmp_path), RenameKill("preprocessed/plans.json", 1, "after"))
    try:
        _refused(scenario.args(tmp_path), tmp_path / "work", first.pid, capsys)
        assert not check_complete(tmp_path / "work")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the whole run is what test_kill_resume already checks
        first.wait()


def test_the_lock_is_released_when_its_holder_ends(tmp_path):
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    with folder_lock(tmp_path):  # released: taken again
        pass


def test_processes_of_one_torchrun_job_share_the_lock(tmp_path):
    with folder_lock(tmp_path, shared=True), folder_lock(tmp_path, shared=True):
        # the job's processes hold it together; a separate run is refused meanwhile
        with pytest.raises(OSError, match="another orthodiff run"):
            with folder_lock(tmp_path):
                pass
    with folder_lock(tmp_path):  # both released: a separate run takes it
        pass
