"""Entry point: ``python -m bench [access | build-v3 SRC | limits | profile CASE | replication | writes [DIR] |
OPTIONS]``."""

import sys

from bench import access, distribution_v3, limits, profile, replication, writes
from bench.run import main

COMMANDS = {"access": access.main, "build-v3": distribution_v3.main, "limits": limits.main, "profile": profile.main,
            "replication": replication.main, "writes": writes.main}

if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
raise SystemExit(main())
