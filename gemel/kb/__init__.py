"""The knowledge base and what is retrieved from it: entities, built on-disk KBs and their indexes, the
vector index, and the demonstration pools (``build`` makes KB folders; the runtime never imports it)."""
