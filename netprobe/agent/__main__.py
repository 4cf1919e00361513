"""The agent process, what `netprobe agent` turns itself into:

    python -m netprobe.agent --config /etc/netprobe/agent.yml [--listen HOST:PORT] [--lang en]

`netprobe agent` replaces its own process with this one (same PID), so a process that runs
for months carries only what the agent uses: typer converts options with pydantic, which an
idle agent would otherwise keep resident for nothing. Errors end as they do on the command
line: one line on stderr and the same exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from netprobe.agent.main import run_agent
from netprobe.errors import exit_code, one_line
from netprobe.i18n import _, use_language


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m netprobe.agent",
        description="Run the agent (what `netprobe agent` becomes).",
    )
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--listen")
    parser.add_argument("--lang")
    options = parser.parse_args(arguments)
    use_language(options.lang)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(run_agent(options.config, options.listen))
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        print(_("netprobe: error: {message}").format(message=one_line(exc)), file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
