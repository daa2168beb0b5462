"""Reading a run's results.json: the outcome counts per adapter and every unexpected result.

    python examples/read_results.py reports/results.json

``load_results`` checks the file against the suite's schema first (a file from elsewhere, or a
damaged one, raises with one line saying why); each result is a ``Record``.
"""

import sys
from collections import Counter
from pathlib import Path

from conformance.api import Record, load_results


def main(path: str) -> int:
    document = load_results([Path(path)])
    records = [Record.from_dict(result) for result in document["results"]]
    counts: dict[str, Counter] = {}
    for record in records:
        counts.setdefault(record.adapter, Counter())[record.outcome] += 1
    for adapter, outcomes in sorted(counts.items()):
        print(f"{adapter}: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))
    unexpected = [record for record in records if record.unexpected]
    for record in unexpected:
        print(f"UNEXPECTED {record.test_id}: {record.status}: {record.message}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
