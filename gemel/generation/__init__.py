"""From a prompt to ranked entity names: the interleaved prompt, the prefill-once decoding (teacher-forced
scores or constrained beam search) and the prefix trees over KB names."""
