"""Helpers shared by the tests: running configs on small data, small RTMPose set-ups."""
