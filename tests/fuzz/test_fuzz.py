"""Fuzz targets of every parser that reads what a peer sends (testkit/fuzz_targets.py): the corpus in
tests/fuzz_corpus replayed in plain Python, then a short coverage-guided atheris run per target.

The long runs are bench/fuzz.py's (≥ 1,000,000 inputs a target); here each target gets a few thousand inputs
or a few seconds, enough to catch a parser change that crashes on what is near the corpus.
"""
from __future__ import annotations

import pytest

from testkit.fuzz_targets import MAX_LEN, TARGETS, corpus_files, replay

CI_RUNS = 10_000
CI_SECONDS = 3


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_replays_clean(target):
    files = corpus_files(target)
    assert files, f"tests/fuzz_corpus/{target} has no seeds (python -m testkit.fuzz_targets seeds)"
    assert all(f.stat().st_size <= MAX_LEN[target] for f in files), "a seed longer than libFuzzer's -max_len"
    assert replay(target, files) == len(files)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_short_coverage_guided_run(target, tmp_path):
    from importlib.util import find_spec

    from testkit.fuzz_runner import run

    assert find_spec("atheris"), "atheris is a test extra: .venv/bin/pip install -e '.[test]'"

    r = run(target, runs=CI_RUNS, max_seconds=CI_SECONDS, workdir=tmp_path)
    assert r.ok, f"{target}: exit {r.returncode}, {r.crashes} finding(s)\n{r.reproducer()}"
    assert r.executions > len(corpus_files(target)) and r.cov > 0, f"{target} did not fuzz:\n{r.log_tail}"
