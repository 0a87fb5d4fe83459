"""The chaos suite: faults inflicted on real ``sagaline worker`` processes, judged by an
oracle of its own (``oracle.py``) from a ledger the chaos saga writes (``saga.py``).

``test_chaos.py`` and ``test_disk_full.py`` run the fast profile in CI; ``python -m
bench.chaos --long`` runs the long one by hand. ``test_oracle.py`` proves the oracle
catches each kind of fault planted in a finished result.
"""
