"""The data-set formats `gemel.data.readers` reads, one module per format, and the helpers they share.

Format modules: `jsonl` (GEMEL Studio's own JSON lines, and `write_jsonl`), `gemel_json` (the preprocessed files
of the official GEMEL code), `clip_features` (GEMEL's CLIP image features, HDF5), `wikidiverse` (its three
releases), `wikimel` (its releases: MIMIC's, the original, MEL-GHMFC's and DRIN's keyed files), `richpedia`
(Richpedia-MEL) and `titles` (the KB builder's title lists). Shared helpers: `errors` (what the readers raise),
`files` (file access: JSON lines, arrays, keyed objects), `records` (`ReadConfig`, the reading loop and its
logged counts, field checks), `splits` (a data set's official split file: which records to read), `mentions`
(mentions not verbatim in their text) and `images` (each data set's image naming, the extensions tried).
`gemel.data.readers` holds the entry points (`read_dataset`, `detect_format`); nothing here imports it, so the
package has no import cycle.
"""
