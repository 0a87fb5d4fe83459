"""``python -m sagaline``: the ``sagaline`` command."""

from sagaline.entry import main

main()
