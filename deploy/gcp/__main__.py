"""Entry point: ``python -m deploy.gcp up|down|plan|scale --project P --region R [flags]`` (see deploy/gcp/cli.py)."""

import sys

from deploy.gcp.cli import main

sys.exit(main())
