"""The order saga of ``sagaline demo``: happy path, declined payment, and a crash."""
