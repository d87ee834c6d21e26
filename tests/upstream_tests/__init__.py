"""Tests of the strict test upstream (`tests/upstream`) itself, driven by the official SDKs."""
