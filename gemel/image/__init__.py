"""The picture as a linking signal: the image scorer (the offline corpus-trained one, or CLIP's own zero-shot score:
clip), when its score may take part (gates), the picture's style (drawing or photo), the memory of labelled
pictures, and the senses' prior removed before the picture picks a sense."""
