"""The Pulumi program that deploys Streamer to AWS (`program()` is the whole stack)."""

from streamer_infra.aws.program import REQUIRED_OUTPUTS, program

__all__ = ["REQUIRED_OUTPUTS", "program"]
