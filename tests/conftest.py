"""Test set-up.

Under CI (``CI`` set in the environment):
- hypothesis runs derandomized, so a submission's CI result does not depend on the random
  examples of that run; local runs keep drawing new examples;
- the reference packages (torch, diffusers, transformers) must be importable: the reference
  tests skip without them, and a CI run that skipped them would prove none of the exact counts.
"""
import importlib.util
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure(config):
    if os.environ.get("CI"):
        missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"CI needs the 'reference' extra for the reference tests; missing: {', '.join(missing)}")
