from smsbatch.core.ledger import OPEN, Ledger
from smsbatch.core.model import FAILED, RETRY, SENT, Done


def test_counts_each_message_once():
    ledger = Ledger(10)
    ledger.claim(0, 0, range(0, 5))
    ledger.claim(1, 1, range(5, 10))
    assert not ledger.apply(0, Done(0, range(0, 3), bytes([SENT, FAILED, SENT])))
    assert (ledger.sent, ledger.failed, ledger.unsent) == (2, 1, 7)
    assert ledger.apply(0, Done(0, range(3, 5), bytes([SENT, RETRY])))  # finishes the claim
    assert ledger.retry(4, 2)  # the RETRY outcome is scheduled, and counted, by its message id
    assert (ledger.sent, ledger.failed, ledger.retried) == (3, 1, 1)
    assert 0 not in ledger.claims[0]  # the claim on batch 0 is finished
    assert ledger.held(1) == 5
    ledger.apply(1, Done(1, (4, 0, 2), bytes([SENT, SENT, FAILED])))  # out of order
    assert (ledger.sent, ledger.failed) == (5, 2)
    assert ledger.held(1) == 2
    assert ledger.unsent == 3
    assert ledger.sent + ledger.failed + ledger.unsent == 10
    assert [i for i, state in enumerate(ledger.state) if state == OPEN] == [4, 6, 8]


def test_duplicate_reports_change_nothing():
    ledger = Ledger(4)
    ledger.claim(0, 0, range(0, 4))
    ledger.apply(0, Done(0, range(0, 2), bytes([SENT, SENT])))
    ledger.apply(0, Done(0, range(0, 2), bytes([FAILED, FAILED])))
    assert (ledger.sent, ledger.failed, ledger.duplicates) == (2, 0, 2)
    # The same message reached a second sender (re-queued) and both answer:
    ledger.claim(1, -1, (0, 1))
    ledger.apply(1, Done(-1, range(0, 2), bytes([FAILED, FAILED])))
    assert (ledger.sent, ledger.failed, ledger.duplicates) == (2, 0, 4)


def test_release_gives_back_only_what_was_not_reported():
    ledger = Ledger(6)
    ledger.claim(0, 0, range(0, 3))
    ledger.claim(0, -1, (4, 5, 3))
    ledger.apply(0, Done(0, range(0, 1), bytes([SENT])))
    ledger.apply(0, Done(-1, (1,), bytes([RETRY])))  # goes round again elsewhere
    assert ledger.retry(5, 2)  # the runner schedules the retry (counted once: asking again changes nothing)
    assert not ledger.retry(5, 2)
    released = ledger.release(0)
    assert released == {0: [1, 2], -1: [0, 2]}
    assert ledger.held(0) == 0
    assert ledger.retried == 1
