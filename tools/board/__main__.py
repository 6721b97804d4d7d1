"""`python tools/board ...`: the board stage (tools/board/cli.py has its main() and its usage)."""
import sys
from pathlib import Path

# Run as a folder, its own folder is first on sys.path: the tools are imported from tools/, and the
# board's modules as the package `board`.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from board.cli import main  # noqa: E402

sys.exit(main())
