"""The package's version and the plugin protocol it speaks (kept apart so every module can
import them without a cycle)."""

VERSION = "0.1.0"
PROTOCOL = 1
