"""ferrocorn's HTTP/1 request parsing compared with Gunicorn 27's own parser,
in process (tests/fuzz/http_diff.py): the same reads go to Gunicorn's
`RequestParser` and to ferrocorn's connection state machine, and the
outcomes must be equal (accept/reject, the exception and error page, every
parsed field, the decoded body, PROXY information).

The bounded run is deterministic: the regression corpus
(tests/fuzz/corpus/http.json), every seed in several read patterns, then a
fixed number of mutated cases for each of a few fixed seeds. A longer run is
documented in tests/fuzz/README.md."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import http_diff

#: Mutated cases per seed: about 10 seconds each on one core.
ITERATIONS = 5000
SEEDS = [1, 2, 3, 4, 5]


def describe(case, difference):
    return "%s: %s\n  reads=%r\n  flags=%r peer=%r eof=%r" % (
        case.name,
        difference,
        case.reads(),
        case.flags,
        case.peer,
        case.eof,
    )


def test_regression_corpus_replays():
    corpus = http_diff.load_corpus()
    assert corpus, "tests/fuzz/corpus/http.json is missing"
    bad = http_diff.replay(corpus)
    assert not bad, "\n".join(describe(c, d) for c, d in bad)


def test_seeds_agree_in_any_read_pattern():
    cases = []
    for seed in http_diff.all_seeds():
        n = len(seed.data)
        cases.append(seed)
        # Every byte its own read (Gunicorn's after-read checks then run
        # at every byte), a read per line, and a client that stays.
        if n <= 2000:
            cases.append(seed.copy(cuts=list(range(1, n))))
        cases.append(seed.copy(cuts=[i for i in http_diff._lines(seed.data) if 0 < i < n]))
        cases.append(seed.copy(eof=False))
    bad = http_diff.replay(cases)
    assert not bad, "\n".join(describe(c, d) for c, d in bad)


@pytest.mark.parametrize("seed", SEEDS)
def test_bounded_fuzz(seed):
    findings, n = http_diff.fuzz(seed, iterations=ITERATIONS)
    assert n == ITERATIONS
    if findings:
        # Minimized, ready for the corpus (http_diff.add_to_corpus).
        lines = [describe(http_diff.minimize(c, budget=500), d) for c, d in findings.values()]
        pytest.fail("ferrocorn and Gunicorn differ:\n" + "\n".join(lines))
