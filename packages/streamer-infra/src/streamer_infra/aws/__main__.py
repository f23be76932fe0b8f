"""Pulumi's entry point (Pulumi.yaml `main`): runs the stack program for the selected stack.

Run directly (`python -m streamer_infra.aws`) there is no engine to register resources with, so
say how to run it instead of failing halfway through the program.
"""

import sys

from pulumi.runtime.settings import get_monitor

from streamer_infra.aws import program

if get_monitor() is None:
    sys.exit("this is the Pulumi program: run it with `hatch run infra:preview ENV` or `pulumi up`")
program()
