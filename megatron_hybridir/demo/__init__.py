"""The embedded default: synthetic multilingual data and the CPU pipeline that shows the method work."""
