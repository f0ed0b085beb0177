"""The picture as evidence for the ranker: the image scorer (the offline corpus-trained one, or CLIP's own zero-shot
score: clip), the facts of a picture (its style, drawing or photo; its colour layout), the memory of labelled
pictures, and the senses' prior under the bare mention."""
