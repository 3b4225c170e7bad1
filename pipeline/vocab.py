"""Old home of the HICO vocabulary, kept only so that modules not yet moved to the label space of
``classes.parquet`` keep importing (regions scoring, the oracle detector, the score_regions stage: the
inference work switches them to :class:`pipeline.classes.ClassSpace`). New code imports
:mod:`pipeline.datasets.hico_vocab`, and only where a HICO fact is meant; delete this module once
nothing imports it.
"""
from pipeline.datasets.hico_vocab import (NO_INTERACTION, NUM_HOIS, NUM_OBJECTS, NUM_VERBS, HOI,  # noqa: F401
                                          Vocabulary, hico_vocabulary)
