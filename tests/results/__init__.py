"""Tests of the results statistics and tables."""
