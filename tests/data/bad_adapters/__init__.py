"""Adapters that fail to load, one way each, for tests/test_loading_robustness.py.

Each is named on the command line as ``tests.data.bad_adapters.<module>:<Name>``; loading any of
them must end the command with one line and exit 2. (A module with a SyntaxError is written by
the test itself, so that linters of this tree never see broken source.)
"""
