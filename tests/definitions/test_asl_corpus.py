"""The ASL interpreter against the recorded AWS behaviour of ``../shared/asl-corpus``.

The whole corpus is data and runs in seconds; each category must keep its floor
(``bench.asl_conformance.FLOORS``). ``python -m bench.asl_conformance`` prints the table
and rewrites the committed results and the list of cases that still fail.
"""

from __future__ import annotations

import pytest

from bench import asl_conformance
from tests.conftest import missing_service


@pytest.fixture(scope="module")
def categories() -> dict[str, asl_conformance.Category]:
    corpus = asl_conformance.corpus_dir()
    if not (corpus / "localstack" / "cases").is_dir():
        missing_service(f"the ASL corpus is not at {corpus}; set SAGALINE_ASL_CORPUS")
    return asl_conformance.run(corpus)


@pytest.mark.parametrize("name", sorted(asl_conformance.FLOORS))
def test_corpus_category_keeps_its_floor(
    categories: dict[str, asl_conformance.Category], name: str
) -> None:
    category = categories[name]
    floor = asl_conformance.FLOORS[name]
    worst = "\n".join(f"{case}: {why}" for case, why in category.failures[:10])
    assert category.total > 0
    assert category.rate >= floor, f"{name}: {category.rate:.1%} < {floor:.0%}\n{worst}"


def test_corpus_sizes_are_the_readme_counts(
    categories: dict[str, asl_conformance.Category],
) -> None:
    assert categories["localstack strict gate (350)"].total == 350
    assert categories["localstack pure, wildcard rules (414)"].total == 414
    assert categories["choice operators (491)"].total == 491
    assert categories["task mock, replay (196)"].total == 196
