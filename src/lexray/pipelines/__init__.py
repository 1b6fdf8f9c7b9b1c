"""Whole-pipeline runs built from the stages (data -> ... -> index): the demo, and the rule that says a stage
is already done."""

from lexray.pipelines.stages import StageRun, content_key, digest_file, digest_tree

__all__ = ["StageRun", "content_key", "digest_file", "digest_tree"]
