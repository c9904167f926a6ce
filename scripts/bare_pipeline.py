"""The yardstick for smsbatch's own speed: the barest pipeline of the same shape.

producer Process -> Queue -> 2 worker Processes -> Queue -> main, PER_PUT
messages per put, one random draw per message and nothing else. Prints the
messages per second it reached, end to end as run from the shell.

    python scripts/bare_pipeline.py MESSAGES PER_PUT
"""

import multiprocessing
import random
import sys

WORKERS = 2


def produce(work, messages, per_put):
    for start in range(0, messages, per_put):
        work.put(list(range(start, min(start + per_put, messages))))
    for _ in range(WORKERS):
        work.put(None)


def send(work, results, seed):
    draw = random.Random(seed).random
    while (batch := work.get()) is not None:
        results.put([draw() for _ in batch])
    results.put(None)


def main(messages, per_put):
    ctx = multiprocessing.get_context("fork")
    work, results = ctx.Queue(maxsize=64), ctx.Queue()
    children = [ctx.Process(target=produce, args=(work, messages, per_put))]
    children += [ctx.Process(target=send, args=(work, results, i)) for i in range(WORKERS)]
    for child in children:
        child.start()
    received, done = 0, 0
    while done < WORKERS:
        batch = results.get()
        if batch is None:
            done += 1
        else:
            received += len(batch)
    for child in children:
        child.join()
    assert received == messages, (received, messages)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
