"""A segment's files and arrays, named once: the writer (`kb.build.write_segment`) and the reader
(`kb.segment.Segment`) both take them from here, so the two cannot drift apart."""
from __future__ import annotations

import os

HEADER = "segment.json"  # counts, the tokenizer's and the spelling tables' fingerprints
HEADER_FIELDS = ("triples", "skipped", "surfaces", "entities", "predicates")  # a reader refuses a header without them
SURFACES = "surfaces.marisa"  # surface strings -> the segment's surface ids
PREDICATES = "predicates.marisa"  # predicate strings -> its predicate ids
STRINGS = "strings.bin"  # every key's objects (file order), then the disambiguations' bytes
SAMPLES = "samples.bin"  # the first object of each predicate's sampled keys
SURFACE_TRIE = "surfaces"  # the stem of the token trie over `tokens(S) [SEP]` (`TokenTrie.save`)
ARRAYS = ("ent_start", "ent_m", "m_offset", "ent_sid", "grp_start", "grp_pred", "grp_ent", "obj_start",
          "obj_offset", "pred_count", "pred_sample_start", "pred_sample_key", "pred_sample_hash",
          "pred_sample_offset")  # each saved as NAME.npy; what each holds: `Segment`'s attributes
SAMPLE_KEPT = 128  # keys kept per predicate and segment, smallest hashes first


def path(directory: str, name: str) -> str:
    """Where a segment in `directory` keeps file `name` (one of the above)."""
    return os.path.join(directory, name)


def array_path(directory: str, array: str) -> str:
    """Where a segment in `directory` keeps array `array` (one of ARRAYS)."""
    return os.path.join(directory, f"{array}.npy")
