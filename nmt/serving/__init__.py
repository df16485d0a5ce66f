"""The HTTP translation server and its page."""
