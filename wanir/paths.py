"""Where the built-in configuration lives (imported by both wanir.config and
wanir.hardware, so neither imports the other for it)."""
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"
