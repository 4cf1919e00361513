"""The agent process: `python -m netprobe.agent CONFIG LISTEN LANGUAGE` (LISTEN "" for the
configured address), what `netprobe agent` turns itself into.

`netprobe agent` replaces its own process with this one (same PID), so a process that runs
for months carries only what the agent uses: typer converts options with pydantic, which an
idle agent would otherwise keep resident for nothing. Errors end as they do on the command
line: one line on stderr and the same exit codes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from netprobe.agent.main import run_agent
from netprobe.errors import exit_code, one_line
from netprobe.i18n import _, use_language


def main(arguments: list[str]) -> int:
    config, listen, language = arguments
    use_language(language)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(run_agent(Path(config), listen or None))
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        print(_("netprobe: error: {message}").format(message=one_line(exc)), file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
