"""The frozen and trained networks: the causal LLM, the vision encoder, the sentence embedder, the feature
mapper (GEMEL's only trained part), their numeric precision and the cache of image features."""
