"""Review the suggested labels and feed the decisions back (docs/review.md).

    promix review RUN_DIR [--serve]      review.html: flagged images, keyboard decisions,
                                         corrections.csv out
    promix train ... --corrections=FILE  verified labels replace the given ones
    promix train ... --annotators=FILE   several labels per image: their consensus
    promix review RUN_DIR --to=labelstudio|fiftyone, --from-labelstudio=EXPORT.json
"""

from .inputs import check_review_inputs, record_inputs, with_review_inputs

__all__ = ["check_review_inputs", "record_inputs", "with_review_inputs"]
