"""Test set-up. Under CI (``CI`` set in the environment) hypothesis runs derandomized, so a
submission's CI result does not depend on the random examples of that run; local runs keep
drawing new examples."""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
