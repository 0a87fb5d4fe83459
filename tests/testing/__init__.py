"""Tests of the public test kit: ``sagaline.testing`` as its users call it."""
